"""t5x legacy checkpoints: read (whole, one array, or into a tree) and write.

A t5x legacy checkpoint is a directory `checkpoint_<step>/` holding a msgpack
file `checkpoint` (read with `flax.serialization.msgpack_restore`):

  {'version': 3,
   'optimizer': {'target': {...parameters...},
                 'state': {'step': int32 scalar, 'param_states': {...}}}}

Each parameter leaf is either an inline numpy array or a tensorstore spec
dict pointing at a zarr v2 directory inside the checkpoint directory:

  {'driver': 'zarr',
   'kvstore': {'driver': 'gfile',
               'path': 'target.encoder.layers_0.mlp.wo.kernel'},
   'metadata': {'chunks': [8, 4], 'compressor': {'id': 'gzip', 'level': 1},
                'dtype': '<f4', 'shape': [8, 4]}}

The kvstore path is relative to the checkpoint directory, so a checkpoint can
be copied or moved; `resolve_tensorstore_spec` turns it into an absolute
`file` (local) or `gcs` (`gs://`) spec.

Parameter names are flaxformer's T5 1.1 names joined with '/', e.g.
`token_embedder/embedding` [V, H], `encoder/layers_0/attention/query/kernel`
[H, N * D], `encoder/relpos_bias/rel_embedding` [N, buckets]; kernels are
[in, out]. A learned prompt lives at `prompts.PROMPT_PATH` [P, H].
Letters: V vocab, H embed, N heads, D head dim, F mlp, P prompt length.
"""
import copy
import difflib
import os
import posixpath
import re
import shutil
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)
import uuid

from absl import logging
from flax import serialization
from flax.core import meta
import jax
import numpy as np
import tensorstore as ts

from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PathLike = Union[str, os.PathLike]
PyTree = Any

T5X_VERSION = 3
EMBEDDING_NAME = 'token_embedder/embedding'
# The msgpack file of a checkpoint directory.
MSGPACK_FILE = 'checkpoint'
# t5x aims at 64 MiB zarr chunks.
_CHUNK_BYTES = 64 * 1024 * 1024
_IO_CONCURRENCY = 128


def _shape(leaf: Any) -> Tuple[int, ...]:
  # jax.ShapeDtypeStruct has a shape but np.shape cannot take it.
  return tuple(leaf.shape) if hasattr(leaf, 'shape') else np.shape(leaf)


def check_tree(params: PyTree, expected: PyTree, *, source: str) -> None:
  """Checks that `params` has the names and shapes of `expected`.

  Args:
    params: nested tree of arrays (or `jax.ShapeDtypeStruct`).
    expected: nested tree of arrays or `jax.ShapeDtypeStruct`.
    source: where `params` came from (a checkpoint path), named in the error.

  Raises:
    ValueError: naming `source` and the first (in sorted order) parameter that
      is missing, unexpected, or has a different shape (both shapes given).
  """
  got = {n: _shape(x) for n, x in trees.flatten_with_names(params)[0]}
  want = {n: _shape(x) for n, x in trees.flatten_with_names(expected)[0]}
  problems = []
  for name in sorted(set(got) | set(want)):
    if name not in got:
      problems.append(f'parameter {name!r} is missing (expected shape '
                      f'{want[name]})')
    elif name not in want:
      problems.append(f'parameter {name!r} (shape {got[name]}) is unexpected')
    elif got[name] != want[name]:
      problems.append(f'parameter {name!r} has shape {got[name]}, expected '
                      f'{want[name]}')
  if problems:
    more = (f' ({len(problems) - 1} more mismatches)'
            if len(problems) > 1 else '')
    raise ValueError(f'{source}: {problems[0]}{more}')


def plain_params(params: PyTree, *, what: str) -> PyTree:
  """`params` with flax `LogicallyPartitioned` (any `AxisMetadata`) boxes
  removed, as every saver of parameters takes them.

  `Transformer.init` returns boxed leaves; a saver given them unchanged would
  write each box's fields, not the array.

  Args:
    params: a tree of arrays, boxed or not.
    what: where the parameters are going (a path), named in errors.

  Raises:
    TypeError: a leaf is not an array even after `flax.linen.meta.unbox`
      (e.g. a `jax.ShapeDtypeStruct` from `jax.eval_shape`: no values).
  """
  plain = meta.unbox(params)
  for name, leaf in trees.flatten_with_names(plain)[0]:
    if isinstance(leaf, (np.ndarray, np.generic, jax.Array, int, float)):
      continue
    raise TypeError(
        f'{what}: parameter {name!r} is a {type(leaf).__name__}, not an '
        'array; pass concrete parameters (unbox flax boxes with '
        'flax.linen.meta.unbox; jax.eval_shape results hold no values)')
  return plain


# ---------------------------------------------------------------------------
# Reading t5x checkpoints.
# ---------------------------------------------------------------------------


def _is_ts_spec(value: Any) -> bool:
  return isinstance(value, Mapping) and 'driver' in value and 'kvstore' in value


def resolve_tensorstore_spec(spec: Mapping[str, Any],
                             checkpoint_dir: str) -> Dict[str, Any]:
  """Makes a stored (relative) tensorstore spec openable from `checkpoint_dir`.

  t5x stores kvstore driver 'gfile' (or 'file', or 'gcs' with a placeholder
  bucket) and a path relative to the checkpoint directory; older writers put
  the path at the top level of the spec. The result uses the 'file' kvstore
  with an absolute path for local checkpoints and the 'gcs' kvstore with the
  checkpoint's bucket for `gs://bucket/dir` checkpoints. Pure function.

  Args:
    spec: the spec dict as stored in the msgpack file.
    checkpoint_dir: the checkpoint directory (local path or gs:// URL).

  Returns:
    A new spec dict; `spec` is not modified.

  Raises:
    ValueError: the kvstore driver is not file/gfile/gcs or no path is given.
  """
  resolved = copy.deepcopy(dict(spec))
  kvstore = dict(resolved.pop('kvstore'))
  driver = kvstore.get('driver')
  if driver not in ('file', 'gfile', 'gcs'):
    raise ValueError(f'{checkpoint_dir}: unsupported tensorstore kvstore '
                     f'driver {driver!r} in spec {spec}; expected file, gfile '
                     'or gcs')
  top_level_path = resolved.pop('path', None)
  relative = kvstore.get('path', top_level_path)
  if not relative:
    raise ValueError(f'{checkpoint_dir}: tensorstore spec {spec} has no path')
  checkpoint_dir = os.fspath(checkpoint_dir)
  if files.is_gcs(checkpoint_dir):
    match = re.fullmatch(r'gs://([^/]+)/?(.*)', checkpoint_dir.rstrip('/'))
    if match is None:
      raise ValueError(f'{checkpoint_dir}: not a gs://bucket/path URL')
    bucket, prefix = match.groups()
    resolved['kvstore'] = {
        'driver': 'gcs',
        'bucket': bucket,
        'path': posixpath.join(prefix, relative) if prefix else relative,
    }
  else:
    resolved['kvstore'] = {
        'driver': 'file',
        'path': os.path.join(checkpoint_dir, relative),
    }
  return resolved


def _locate(path: PathLike) -> Tuple[str, str]:
  """Returns (checkpoint dir, msgpack file) for a checkpoint dir or its file."""
  path = os.fspath(path)
  if not files.exists(path):
    raise FileNotFoundError(f't5x checkpoint {path} does not exist')
  if not files.is_gcs(path):
    # tensorstore's file driver takes absolute paths only.
    path = os.path.abspath(path)
  if not files.isdir(path):
    return os.path.dirname(path), path
  file = os.path.join(path, MSGPACK_FILE)
  if not files.exists(file):
    steps = sorted(n for n in files.listdir(path)
                   if re.fullmatch(r'checkpoint_\d+', n))
    hint = f'; it holds step directories {steps}' if steps else ''
    raise FileNotFoundError(
        f't5x checkpoint directory {path} has no msgpack file '
        f"'{MSGPACK_FILE}'{hint}")
  return path, file


def parse_msgpack_file(file: str, what: str) -> Any:
  """The tree in a flax msgpack file (t5x's, HF Flax's).

  Raises:
    ValueError: the file does not parse, naming it, `what` it is and its size.
  """
  raw = files.read_bytes(file)
  try:
    return serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several types for bad input.
    raise ValueError(f'{file}: cannot parse the {what} ({len(raw)} bytes; '
                     f'truncated or corrupt?): {e}') from e


def _read_msgpack(path: PathLike) -> Tuple[str, Dict[str, Any]]:
  """Reads a checkpoint's msgpack file.

  Returns:
    (checkpoint dir, {name: inline np.ndarray or stored tensorstore spec dict})
    for the parameters under `optimizer/target`.
  """
  checkpoint_dir, file = _locate(path)
  contents = parse_msgpack_file(file, 't5x msgpack file')
  if (not isinstance(contents, Mapping) or
      not isinstance(contents.get('optimizer'), Mapping) or
      not isinstance(contents['optimizer'].get('target'), Mapping)):
    keys = list(contents) if isinstance(contents, Mapping) else type(contents)
    raise ValueError(f'{file}: expected a t5x checkpoint with '
                     f"'optimizer/target'; found top-level {keys}")
  version = contents.get('version')
  if version != T5X_VERSION:
    logging.warning('%s: t5x checkpoint version %s, expected %d.', file,
                    version, T5X_VERSION)
  stored = trees.flatten(contents['optimizer']['target'], is_leaf=_is_ts_spec)
  return checkpoint_dir, stored


def _stored_shape(value: Any) -> Optional[Tuple[int, ...]]:
  if _is_ts_spec(value):
    shape = value.get('metadata', {}).get('shape')
    return None if shape is None else tuple(shape)
  return _shape(value)


def _read_arrays(stored: Mapping[str, Any],
                 checkpoint_dir: str) -> Dict[str, np.ndarray]:
  """Materialises stored leaves; zarr arrays are read concurrently."""
  arrays = {n: np.asarray(v) for n, v in stored.items() if not _is_ts_spec(v)}
  specs = {
      n: resolve_tensorstore_spec(v, checkpoint_dir)
      for n, v in stored.items() if _is_ts_spec(v)
  }
  context = ts.Context({'file_io_concurrency': {'limit': _IO_CONCURRENCY}})
  # NOTE: a missing chunk file would otherwise read as the fill value (zeros).
  opening = {
      n: ts.open(dict(s, fill_missing_data_reads=False), open=True, read=True,
                 context=context) for n, s in specs.items()
  }

  def fail(name, error):
    location = specs[name]['kvstore']['path']
    if 'NOT_FOUND' in str(error):
      return FileNotFoundError(
          f'{checkpoint_dir}: zarr array of parameter {name!r} is missing or '
          f'incomplete at {location}: {error}')
    return ValueError(f'{checkpoint_dir}: cannot read parameter {name!r} from '
                      f'{location}: {error}')

  reading = {}
  for name, future in opening.items():
    try:
      reading[name] = future.result().read()
    except ValueError as e:
      raise fail(name, e) from e
  for name, future in reading.items():
    try:
      arrays[name] = np.asarray(future.result())
    except ValueError as e:
      raise fail(name, e) from e
  return arrays


def _apply_assignment_map(name: str,
                          rules: Sequence[Tuple[re.Pattern, Optional[str]]]):
  """Returns the checkpoint name for `name`, or None if it is not loaded."""
  for pattern, replacement in rules:
    match = pattern.fullmatch(name)
    if match:
      return None if replacement is None else match.expand(replacement)
  return name


def _keep(leaf: Any, name: str, why: str, source: str) -> Any:
  if isinstance(leaf, jax.ShapeDtypeStruct):
    raise ValueError(
        f'{source}: parameter {name!r} is not loaded ({why}), so `like` must '
        f'hold its initial value, but it is a ShapeDtypeStruct {leaf}')
  logging.info('Not restoring %s from %s (%s).', name, source, why)
  return leaf


def load_t5x(path: PathLike,
             *,
             like: Optional[PyTree] = None,
             assignment_map: Sequence[Tuple[str, Optional[str]]] = (),
             fallback_to_scratch: bool = False) -> PyTree:
  """Loads the parameters of a t5x legacy checkpoint.

  Args:
    path: a checkpoint directory (`.../checkpoint_1000000`) or its msgpack
      file; local or gs://.
    like: optional tree of arrays or `jax.ShapeDtypeStruct` (e.g. from
      `jax.eval_shape` of a model init; flax `LogicallyPartitioned` boxes are
      unboxed). The result then has exactly its structure, shapes are checked
      and values are cast to its dtypes.
    assignment_map: t5x-style (regex, replacement) rules applied, first match
      wins, with `re.fullmatch` to the '/'-joined name of each leaf of `like`
      (no 'target/' prefix). Replacement None: not loaded, `like`'s value is
      kept; a string: the checkpoint name to load (may use \\1 groups).
    fallback_to_scratch: keep `like`'s value for names absent from the
      checkpoint instead of raising.

  Returns:
    Without `like`: the nested `target` tree (token_embedder, encoder,
    decoder, ...) of numpy arrays in their stored dtypes. With `like`: a tree of
    its structure.

  Raises:
    FileNotFoundError: the checkpoint, its msgpack file or a zarr array is
      missing.
    ValueError: the msgpack file is corrupt, a parameter of `like` is absent
      from the checkpoint or has another shape, or a kept value is not concrete.
  """
  source = os.fspath(path)
  checkpoint_dir, stored = _read_msgpack(path)
  if like is None:
    if assignment_map or fallback_to_scratch:
      raise ValueError('load_t5x: assignment_map and fallback_to_scratch need '
                       '`like`')
    return trees.unflatten(_read_arrays(stored, checkpoint_dir))
  return _restore(stored, lambda chosen: _read_arrays(chosen, checkpoint_dir),
                  like=like, assignment_map=assignment_map,
                  fallback_to_scratch=fallback_to_scratch, source=source)


def load_into(stored: Mapping[str, Any],
              *,
              like: PyTree,
              assignment_map: Sequence[Tuple[str, Optional[str]]] = (),
              fallback_to_scratch: bool = False,
              source: str) -> PyTree:
  """`load_t5x`'s `like` and `assignment_map` semantics for parameters that
  are already in memory (e.g. read from another format).

  Args:
    stored: {'/'-joined name: array}.
    like, assignment_map, fallback_to_scratch: as in `load_t5x`.
    source: where `stored` came from, named in errors.

  Returns:
    A tree of `like`'s structure, values cast to its dtypes.
  """
  return _restore(stored, lambda chosen: {n: np.asarray(v)
                                        for n, v in chosen.items()},
                  like=like, assignment_map=assignment_map,
                  fallback_to_scratch=fallback_to_scratch, source=source)


def _restore(stored: Mapping[str, Any],
             read: Callable[[Mapping[str, Any]], Dict[str, np.ndarray]], *,
             like: PyTree, assignment_map: Sequence[Tuple[str, Optional[str]]],
             fallback_to_scratch: bool, source: str) -> PyTree:
  """The parameters of `like` from `stored` ({name: stored leaf}); only the
  leaves chosen are materialised, by `read`."""
  like = meta.unbox(like)
  rules = [(re.compile(p), r) for p, r in assignment_map]
  named, treedef = trees.flatten_with_names(like)
  to_read, kept, used = {}, {}, set()
  for name, leaf in named:
    ckpt_name = _apply_assignment_map(name, rules)
    if ckpt_name is None:
      kept[name] = _keep(leaf, name, 'assignment_map maps it to None', source)
      continue
    if ckpt_name not in stored:
      if fallback_to_scratch:
        kept[name] = _keep(leaf, name,
                           f'{ckpt_name!r} is not in the checkpoint', source)
        continue
      alias = '' if ckpt_name == name else f' (for {name!r})'
      raise ValueError(
          f'{source}: parameter {ckpt_name!r}{alias} is not in the checkpoint;'
          ' map it to None in assignment_map or pass fallback_to_scratch=True'
          f' to keep its initial value. Close names: '
          f'{difflib.get_close_matches(ckpt_name, list(stored), n=3)}')
    stored_shape = _stored_shape(stored[ckpt_name])
    if stored_shape is not None and stored_shape != _shape(leaf):
      raise ValueError(
          f'{source}: parameter {name!r} has shape {stored_shape} in the '
          f'checkpoint (as {ckpt_name!r}), expected {_shape(leaf)}')
    to_read[name] = stored[ckpt_name]
    used.add(ckpt_name)
  unused = sorted(set(stored) - used)
  if unused:
    logging.warning('%s: %d checkpoint parameters not loaded: %s', source,
                    len(unused), unused)

  arrays = read(to_read)
  leaves = []
  for name, leaf in named:
    if name in kept:
      leaves.append(kept[name])
      continue
    array = arrays[name]
    if array.shape != _shape(leaf):
      raise ValueError(f'{source}: parameter {name!r} has shape {array.shape} '
                       f'in the checkpoint, expected {_shape(leaf)}')
    leaves.append(array.astype(leaf.dtype, copy=False))
  return jax.tree_util.tree_unflatten(treedef, leaves)


def load_t5x_array(path: PathLike, name: str) -> np.ndarray:
  """Reads one parameter, e.g. 'token_embedder/embedding', of a checkpoint.

  Only that parameter's zarr array (and the msgpack file) is read.

  Raises:
    ValueError: `name` is not in the checkpoint (close names are suggested).
  """
  checkpoint_dir, stored = _read_msgpack(path)
  if name not in stored:
    raise ValueError(
        f'{os.fspath(path)}: parameter {name!r} is not in the checkpoint; '
        f'close names: {difflib.get_close_matches(name, list(stored), n=3)}')
  return _read_arrays({name: stored[name]}, checkpoint_dir)[name]


# ---------------------------------------------------------------------------
# Writing t5x checkpoints.
# ---------------------------------------------------------------------------


def _goes_to_zarr(name: str, array: np.ndarray) -> bool:
  """Whether a parameter is written as a zarr array (else inline in msgpack).

  NOTE: this reproduces t5x's T5 1.1 checkpoints: 1-D scales and the
  relative position tables are inline; kernels, embeddings and prompts (2-D
  and up) are zarr arrays.
  """
  return (array.ndim >= 2 and array.size > 0 and
          not name.endswith('relpos_bias/rel_embedding'))


def _chunk_shape(shape: Sequence[int], itemsize: int) -> List[int]:
  """Largest chunk of at most 64 MiB whose sides divide `shape`'s sides."""
  max_elements = max(1, _CHUNK_BYTES // itemsize)
  divisors = [[d for d in range(1, n + 1) if n % d == 0] for n in shape]
  while np.prod([d[-1] for d in divisors]) > max_elements:
    widest = max(range(len(shape)), key=lambda i: divisors[i][-1])
    divisors[widest].pop()
  return [d[-1] for d in divisors]


def _zarr_dtype(dtype: np.dtype) -> str:
  return 'bfloat16' if dtype.name == 'bfloat16' else dtype.str


def _wait_all(futures: Sequence[Any]) -> List[Any]:
  """Waits for every future, then raises the first error if any failed.

  Waiting for all of them matters on failure: a write still in flight could
  recreate files in a directory that is being removed.
  """
  results, error = [], None
  for future in futures:
    try:
      results.append(future.result())
    except Exception as e:  # pylint: disable=broad-except
      error = error or e
  if error is not None:
    raise error
  return results


def _write_zarr_arrays(
    jobs: Mapping[str, Tuple[Dict[str, Any], np.ndarray]]) -> None:
  """Creates and writes zarr arrays concurrently: {name: (spec, array)}."""
  context = ts.Context({'file_io_concurrency': {'limit': _IO_CONCURRENCY}})
  pending = []
  try:
    for spec, _ in jobs.values():
      pending.append(
          ts.open(dict(spec, store_data_equal_to_fill_value=True), create=True,
                  open=False, context=context))
    stores, pending = _wait_all(pending), []
    for store, (_, array) in zip(stores, jobs.values()):
      pending.append(store.write(array))
    _wait_all(pending)
  except BaseException:
    # Let started I/O finish so that no file appears after the caller cleans up.
    for future in pending:
      try:
        future.result()
      except Exception:  # pylint: disable=broad-except
        pass
    raise


def _write_msgpack(file: str, contents: Mapping[str, Any]) -> None:
  with open(file, 'wb') as f:
    f.write(serialization.msgpack_serialize(contents))


def _replace_dir(tmp: str, path: str) -> None:
  """Renames `tmp` to `path`, replacing an existing `path` only at the end."""
  if not os.path.lexists(path):
    os.rename(tmp, path)
    return
  old = f'{path}.old-{uuid.uuid4().hex[:8]}'
  os.rename(path, old)
  try:
    os.rename(tmp, path)
  except BaseException:
    os.rename(old, path)
    raise
  if os.path.isdir(old) and not os.path.islink(old):
    shutil.rmtree(old)
  else:
    os.remove(old)


def save_t5x(params: PyTree,
             path: PathLike,
             *,
             step: int = 0,
             overwrite: bool = False) -> None:
  """Writes `params` as a t5x legacy checkpoint directory (version 3).

  Layout as in the module docstring: `optimizer/target` holds 1-D arrays and
  relpos tables inline and every other array as a gzip-compressed, C-order
  zarr array (dtype kept, e.g. '<f4') referenced by a spec with kvstore driver
  'gfile' and relative path 'target.<name with dots>'; `optimizer/state`
  holds only `step`. t5x reads it with `load_t5x_checkpoint`, or restores it
  with `fallback_to_scratch=True` to initialise optimizer slots.

  The checkpoint is written into a temporary sibling directory and renamed to
  `path`; on failure nothing is left at `path` (an existing checkpoint that
  was to be overwritten stays as it was).

  Args:
    params: nested dict of arrays (numpy or fully addressable jax arrays),
      plain or in flax `LogicallyPartitioned` boxes.
    path: local directory to create, e.g. `.../checkpoint_0`.
    step: written as `optimizer/state/step`.
    overwrite: replace an existing `path`.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
    ValueError: `path` is a gs:// URL, or a parameter name contains '.'.
    TypeError: a leaf is not an array (see `plain_params`).
  """
  path = os.fspath(path).rstrip('/')
  if files.is_gcs(path):
    raise ValueError(f'save_t5x writes local directories only, got {path}')
  if os.path.lexists(path) and not overwrite:
    raise FileExistsError(f'{path} already exists; pass overwrite=True to '
                          'replace it')
  named, _ = trees.flatten_with_names(plain_params(params, what=path))
  flat = {}
  for name, leaf in named:
    if any('.' in part for part in name.split('/')):
      raise ValueError(f'parameter {name!r}: names written to {path} may not '
                       "contain '.' (it separates zarr directory names)")
    flat[name] = np.asarray(leaf)

  target, zarr_specs = {}, {}
  for name, array in flat.items():
    if not _goes_to_zarr(name, array):
      target[name] = array
      continue
    target[name] = zarr_specs[name] = {
        'driver': 'zarr',
        'kvstore': {'driver': 'gfile',
                    'path': 'target.' + name.replace('/', '.')},
        'metadata': {
            'chunks': _chunk_shape(array.shape, array.dtype.itemsize),
            'compressor': {'id': 'gzip', 'level': 1},
            'dtype': _zarr_dtype(array.dtype),
            'shape': list(array.shape),
        },
    }
  contents = {
      'version': T5X_VERSION,
      'optimizer': {
          'target': trees.unflatten(target),
          'state': {'step': np.asarray(step, np.int32)},
      },
  }

  tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  try:
    os.makedirs(tmp)
    _write_zarr_arrays({n: (resolve_tensorstore_spec(s, tmp), flat[n])
                        for n, s in zarr_specs.items()})
    _write_msgpack(os.path.join(tmp, MSGPACK_FILE), contents)
    _replace_dir(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info('Wrote t5x checkpoint (%d parameters, step %d) to %s.',
               len(flat), step, path)
