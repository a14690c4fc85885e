export * from "./keys";
export * from "./queues";
export * from "./redis";
export * from "./job-store";
export * from "./producer";
export * from "./job-events";
export * from "./fair-queue";
export * from "./answer-cache";
