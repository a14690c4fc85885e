export * from "./config";
export * from "./schemas";
export * from "./payload";
export * from "./errors";
export * from "./ids";
export * from "./env";
export * from "./backoff";
export * from "./routes";
