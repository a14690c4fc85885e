export * from "./ports";
export * from "./redis";
export * from "./apps";
export * from "./stack";
export * from "./client";
export * from "./receiver";
export * from "./otlp";
export * from "./prometheus";
