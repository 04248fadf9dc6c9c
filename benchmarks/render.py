"""Writes docs/benchmarks.md from benchmarks/benchmarks.template.md.

Each `{{name}}` line of the template is replaced by the Markdown summary the
benchmark printed for that run (benchmarks/results/<name>.md, written by
`python -m prompt_tuning.bench ... --markdown_output=...`): its command line
as a code block, then its tables. `{{name:Section}}` keeps only that section
(`### Section`) of a multi-suite summary. Nothing is computed here: every
figure in docs/benchmarks.md comes from a summary file as the benchmark wrote
it.

    python benchmarks/render.py
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'benchmarks' / 'results'
OUTPUT = ROOT / 'docs' / 'benchmarks.md'
_PLACEHOLDER = re.compile(r'^\{\{([\w.-]+)(?::([^}]+))?\}\}$')


def summary(name: str, section: str = None) -> str:
  """A run's summary: the command as a code block, then its sections."""
  text = (RESULTS / f'{name}.md').read_text().strip()
  first, rest = text.split('\n', 1)
  command = first.removeprefix('Command: `').rstrip('`')
  # The summary ends the command with its OpenMP wait policy.
  command, _, policy = command.partition('  (')
  policy = policy.rstrip(')')
  prefix = f'{policy} ' if policy and policy != 'OMP_WAIT_POLICY=PASSIVE' else ''
  sections = re.split(r'^### ', rest.strip(), flags=re.M)
  kept = []
  for part in sections:
    if not part.strip():
      continue
    title, _, body = part.partition('\n')
    if section is None or title.strip() == section:
      kept.append(body.strip() if section else f'**{title.strip()}**\n\n'
                  f'{body.strip()}')
  return '\n'.join(['```', prefix + command, '```', '', '\n\n'.join(kept)])


def main():
  template = (ROOT / 'benchmarks' / 'benchmarks.template.md').read_text()
  lines = []
  for line in template.splitlines():
    match = _PLACEHOLDER.match(line.strip())
    lines.append(summary(match.group(1), match.group(2)) if match else line)
  OUTPUT.write_text('\n'.join(lines) + '\n')
  print(f'wrote {OUTPUT}')


if __name__ == '__main__':
  main()
