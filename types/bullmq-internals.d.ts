// BullMQ's scripts and version, imported from its build (bullmq-functions.ts in @switchyard/queue;
// BullMQ is pinned exactly, and bullmq-functions.int.test.ts checks these against it).
declare module "bullmq/dist/cjs/scripts/moveToFinished-14.js" {
  export const moveToFinished: { name: string; content: string; keys: number };
}
declare module "bullmq/dist/cjs/scripts/moveToActive-11.js" {
  export const moveToActive: { name: string; content: string; keys: number };
}
declare module "bullmq/dist/cjs/version.js" {
  export const version: string;
}
