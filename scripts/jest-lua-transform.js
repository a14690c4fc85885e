// Jest counterpart of esbuild's text loader: a .lua import becomes its source string.
module.exports = {
  process(sourceText) {
    return { code: `module.exports = { __esModule: true, default: ${JSON.stringify(sourceText)} };` };
  },
};
