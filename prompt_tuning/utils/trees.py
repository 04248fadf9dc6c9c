"""Nested mappings of parameters <-> flat dicts named by '/'-joined keys.

`{'encoder': {'prompt': {'prompt': {'prompt': x}}}}` flattens to
`{'encoder/prompt/prompt/prompt': x}`, the names t5x checkpoints, assignment
maps and logs use.
"""
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import jax

PyTree = Any


def flatten(tree: Mapping[str, Any],
            is_leaf: Optional[Callable[[Any], bool]] = None) -> Dict[str, Any]:
  """Flattens nested mappings (dicts, FrozenDicts) to {'a/b/c': leaf}.

  Args:
    tree: nested mappings; empty mappings vanish.
    is_leaf: optional test that keeps a mapping whole as a leaf (e.g. a
      stored tensorstore spec); anything that is not a mapping is a leaf.

  Returns:
    A new flat dict, in the order of `tree`'s items.
  """
  flat = {}

  def visit(node, prefix):
    for key, value in node.items():
      name = f'{prefix}/{key}' if prefix else str(key)
      if isinstance(value, Mapping) and not (is_leaf and is_leaf(value)):
        visit(value, name)
      else:
        flat[name] = value

  visit(tree, '')
  return flat


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
  """The inverse of `flatten`: {'a/b/c': leaf} -> nested dicts."""
  tree = {}
  for name, value in flat.items():
    *parents, last = name.split('/')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return tree


def _key_name(key: Any) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def flatten_with_names(tree: PyTree) -> Tuple[List[Tuple[str, Any]], Any]:
  """Flattens any pytree (lists and dataclasses too) keeping its treedef.

  Returns:
    ([(name, leaf)], treedef): names are the keys joined with '/'; the leaves
    are in `jax.tree_util` order, so `tree_unflatten(treedef, leaves)`
    rebuilds the tree.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  named = [('/'.join(_key_name(k) for k in path), leaf)
           for path, leaf in leaves]
  return named, treedef
