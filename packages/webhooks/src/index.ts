export * from "./address-policy";
export * from "./events";
export * from "./guarded-agent";
export * from "./queue";
export * from "./signing";
export * from "./store";
export * from "./target";
