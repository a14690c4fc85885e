export * from "./types";
export * from "./errors";
export * from "./retry-hints";
export * from "./http";
export * from "./openai/chat";
export * from "./registry";
