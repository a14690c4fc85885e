export * from "./breaker";
export * from "./key-pool";
export * from "./estimate";
