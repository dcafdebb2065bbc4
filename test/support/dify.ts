// The scripts Dify wraps user code in before it POSTs them to the sandbox (api.md, "Dify's
// three runner scripts"): what real traffic looks like, for conformance tests and benchmarks.
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** Dify's python3 code node: the user's `main`, then inputs decoded from base64 JSON. */
export function pythonRunner(code: string, inputs: Record<string, unknown>): string {
  return `${code}

import json
from base64 import b64decode

# decode and prepare input dict
inputs_obj = json.loads(b64decode('${b64(JSON.stringify(inputs))}').decode('utf-8'))

# execute main function
output_obj = main(**inputs_obj)

# convert output to json and print
output_json = json.dumps(output_obj, indent=4)
result = f'''<<RESULT>>{output_json}<<RESULT>>'''
print(result)
`;
}

/** Dify's JavaScript code node (sloppy mode: user code may assign undeclared globals). */
export function nodejsRunner(code: string, inputs: Record<string, unknown>): string {
  return `
// declare main function
${code}

// decode and prepare input object
var inputs_obj = JSON.parse(Buffer.from('${b64(JSON.stringify(inputs))}', 'base64').toString('utf-8'))

// execute main function
var output_obj = main(inputs_obj)

// convert output to json and print
var output_json = JSON.stringify(output_obj)
var result = \`<<RESULT>>\${output_json}<<RESULT>>\`
console.log(result)
`;
}

/** Dify's Jinja2 template transform, sent as python3; `sandboxed` is what newer Dify does. */
export function jinja2Runner(
  template: string,
  inputs: Record<string, unknown>,
  sandboxed = false,
): string {
  const make = sandboxed
    ? `from jinja2.sandbox import SandboxedEnvironment
    template = SandboxedEnvironment().from_string(b64decode('${b64(template)}').decode('utf-8'))`
    : `template = jinja2.Template(b64decode('${b64(template)}').decode('utf-8'))`;
  return `
# declare main function
def main(**inputs):
    import jinja2
    from base64 import b64decode
    ${make}
    return template.render(**inputs)

import json
from base64 import b64decode

# decode and prepare input dict
inputs_obj = json.loads(b64decode('${b64(JSON.stringify(inputs))}').decode('utf-8'))

# execute main function
output = main(**inputs_obj)

# convert output and print
result = f'''<<RESULT>>{output}<<RESULT>>'''
print(result)
`;
}

/** Dify's preload for Jinja2: imports jinja2 and renders a trivial template. */
export const JINJA2_PRELOAD = `
import jinja2
from base64 import b64decode

def _jinja2_preload_():
    # prepare jinja2 environment, load template and render before to avoid sandbox issue
    template = jinja2.Template('{{s}}')
    template.render(s='a')

if __name__ == '__main__':
    _jinja2_preload_()
`;

/** Dify's default code of a new code node, for each language. */
export const DEFAULT_PYTHON_MAIN = `def main(arg1: str, arg2: str) -> dict:
    return {
        "result": arg1 + arg2,
    }`;

export const DEFAULT_NODEJS_MAIN = `function main({arg1, arg2}) {
    return {
        result: arg1 + arg2
    }
}`;

/** What Dify does with a response: the text between the first and the last <<RESULT>>. */
export function extractResult(stdout: string): string {
  const m = /<<RESULT>>([\s\S]*)<<RESULT>>/.exec(stdout);
  if (m === null)
    throw new Error(`no <<RESULT>> in stdout: ${JSON.stringify(stdout.slice(0, 200))}`);
  return m[1]!;
}
