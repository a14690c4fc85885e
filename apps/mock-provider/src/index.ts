export { MockProvider, type MockOptions } from "./server";
