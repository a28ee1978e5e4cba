// Bundle one guest into one ES module for componentize-js: the guest's code
// and the SDK's, with the host's interfaces (`wshost:…`) left as imports.
// `APP` names the guest's source, `OUT` the bundle (a source map beside it).
export default {
  input: process.env.APP ?? "app.ts",
  external: [/^wshost:/],
  platform: "neutral",
  output: { file: process.env.OUT ?? "dist/app.js", format: "esm", sourcemap: true },
};
