export * from "./breaker";
