"""The one writer of Markdown tables (GitHub's pipe tables)."""
from typing import Any, Iterable, Sequence

_RULES = {'l': '---', 'r': '---:'}


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *,
                   align: str = '', escape: bool = True,
                   tight_empty: bool = False,
                   trailing_newline: bool = True) -> str:
  """A Markdown table: a header line, the rule line, then one line per row.

  Every cell is `str(cell)` written as `| cell |`, e.g.

    | method | score |
    |---|---:|
    | lora | 91.20 |

  Args:
    header: the column names.
    rows: the rows' cells; a row is written as given (a short row gives a
      short line, as Markdown allows).
    align: one letter per column, 'l' (the rule '---': GitHub's default,
      left) or 'r' ('---:', right); '' aligns every column left.
    escape: write '|' in a cell as '\\|' (a bare '|' would end the cell);
      off for cells that are Markdown already.
    tight_empty: write an empty cell as '| |' instead of '|  |'.
    trailing_newline: end the table with a newline.

  Returns:
    The table's text.

  Raises:
    ValueError: if `align` does not give one 'l' or 'r' per column.
  """
  align = align or 'l' * len(header)
  if len(align) != len(header) or set(align) - set(_RULES):
    raise ValueError(f'table alignment {align!r} must give one of '
                     f'{sorted(_RULES)} per column of {list(header)}')

  def line(cells):
    texts = [str(c).replace('|', '\\|') if escape else str(c)
             for c in cells] or ['']
    return '|' + '|'.join(' ' if tight_empty and not text else f' {text} '
                          for text in texts) + '|'

  lines = [line(header), '|' + '|'.join(_RULES[a] for a in align) + '|']
  lines += [line(row) for row in rows]
  return '\n'.join(lines) + ('\n' if trailing_newline else '')
