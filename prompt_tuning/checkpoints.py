"""Checkpoint I/O: t5x legacy checkpoints, HF T5 safetensors and prompt files.

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
[in, out]. A learned prompt lives at `encoder/prompt/prompt/prompt` [P, H].
Letters: V vocab, H embed, N heads, D head dim, F mlp, P prompt length.
"""
import copy
import difflib
import io
import os
import posixpath
import re
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
import uuid

from absl import logging
from flax import serialization
import jax
import numpy as np
import safetensors.numpy
import tensorstore as ts

PathLike = Union[str, os.PathLike]
PyTree = Any

T5X_VERSION = 3
EMBEDDING_NAME = 'token_embedder/embedding'
PROMPT_NAME = 'encoder/prompt/prompt/prompt'
_MSGPACK_FILE = 'checkpoint'
# t5x aims at 64 MiB zarr chunks.
_CHUNK_BYTES = 64 * 1024 * 1024
_IO_CONCURRENCY = 128


# ---------------------------------------------------------------------------
# Paths: local files, or gs:// through tf.io.gfile (imported only then).
# ---------------------------------------------------------------------------


def _is_gcs(path: str) -> bool:
  return path.startswith('gs://')


def _gfile():
  # TensorFlow is heavy and only needed for gs:// paths.
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  return gfile


def _exists(path: str) -> bool:
  return _gfile().exists(path) if _is_gcs(path) else os.path.exists(path)


def _isdir(path: str) -> bool:
  return _gfile().isdir(path) if _is_gcs(path) else os.path.isdir(path)


def _listdir(path: str) -> List[str]:
  if _is_gcs(path):
    return [p.rstrip('/') for p in _gfile().listdir(path)]
  return os.listdir(path)


def _read_bytes(path: str) -> bytes:
  if _is_gcs(path):
    with _gfile().GFile(path, 'rb') as f:
      return f.read()
  with open(path, 'rb') as f:
    return f.read()


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to a temporary sibling of `path`, then renames it, so the
  file is never seen half-written; local paths and gs://."""
  tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  if _is_gcs(path):
    gfile = _gfile()
    try:
      with gfile.GFile(tmp, 'wb') as f:
        f.write(data)
      gfile.rename(tmp, path, overwrite=True)
    except BaseException:
      if gfile.exists(tmp):
        gfile.remove(tmp)
      raise
    return
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


# ---------------------------------------------------------------------------
# Trees: nested mappings <-> {'a/b/c': leaf}.
# ---------------------------------------------------------------------------


def _key_name(key: Any) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _flatten_with_names(tree: PyTree) -> Tuple[List[Tuple[str, Any]], Any]:
  """Returns ([(name, leaf)], treedef); names are keys joined with '/'."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  named = [('/'.join(_key_name(k) for k in path), leaf)
           for path, leaf in leaves]
  return named, treedef


def _flatten_dict(tree: Mapping[str, Any], is_leaf) -> Dict[str, Any]:
  """Flattens nested dicts whose leaves satisfy `is_leaf` (or are not dicts)."""
  flat = {}

  def visit(node, prefix):
    for key, value in node.items():
      name = f'{prefix}/{key}' if prefix else str(key)
      if isinstance(value, Mapping) and not is_leaf(value):
        visit(value, name)
      else:
        flat[name] = value

  visit(tree, '')
  return flat


def _unflatten_dict(flat: Mapping[str, Any]) -> Dict[str, Any]:
  tree = {}
  for name, value in flat.items():
    *parents, last = name.split('/')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return tree


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
  got = {n: _shape(x) for n, x in _flatten_with_names(params)[0]}
  want = {n: _shape(x) for n, x in _flatten_with_names(expected)[0]}
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
  if _is_gcs(checkpoint_dir):
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
  if not _exists(path):
    raise FileNotFoundError(f't5x checkpoint {path} does not exist')
  if not _is_gcs(path):
    # tensorstore's file driver takes absolute paths only.
    path = os.path.abspath(path)
  if not _isdir(path):
    return os.path.dirname(path), path
  file = os.path.join(path, _MSGPACK_FILE)
  if not _exists(file):
    steps = sorted(n for n in _listdir(path)
                   if re.fullmatch(r'checkpoint_\d+', n))
    hint = f'; it holds step directories {steps}' if steps else ''
    raise FileNotFoundError(
        f't5x checkpoint directory {path} has no msgpack file '
        f"'{_MSGPACK_FILE}'{hint}")
  return path, file


def _read_msgpack(path: PathLike) -> Tuple[str, Dict[str, Any]]:
  """Reads a checkpoint's msgpack file.

  Returns:
    (checkpoint dir, {name: inline np.ndarray or stored tensorstore spec dict})
    for the parameters under `optimizer/target`.
  """
  checkpoint_dir, file = _locate(path)
  raw = _read_bytes(file)
  try:
    contents = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several types for bad input.
    raise ValueError(f'{file}: cannot parse the t5x msgpack file ({len(raw)} '
                     f'bytes; truncated or corrupt?): {e}') from e
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
  stored = _flatten_dict(contents['optimizer']['target'], is_leaf=_is_ts_spec)
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
      `jax.eval_shape` of a model init). The result then has exactly its
      structure, shapes are checked and values are cast to its dtypes.
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
    return _unflatten_dict(_read_arrays(stored, checkpoint_dir))

  rules = [(re.compile(p), r) for p, r in assignment_map]
  named, treedef = _flatten_with_names(like)
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

  arrays = _read_arrays(to_read, checkpoint_dir)
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


def prompt_from_t5x(path: PathLike) -> np.ndarray:
  """Reads the prompt [P, H] stored at `encoder/prompt/prompt/prompt`."""
  return load_t5x_array(path, PROMPT_NAME)


def _load_npy(path: str, what: str, alternative: str = '') -> np.ndarray:
  """Reads one array from a .npy file; errors name `what` and `path`."""
  try:
    array = np.load(io.BytesIO(_read_bytes(path)), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f'{what} {path} is not a readable .npy file{alternative}: '
                     f'{e}') from e
  if not isinstance(array, np.ndarray):
    raise ValueError(f'{what} {path} holds a {type(array).__name__}, expected '
                     'a single .npy array')
  return array


def load_embedding(path: PathLike) -> np.ndarray:
  """Reads an embedding table [V, H] from a `.npy` file or a t5x checkpoint.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: `path` is neither a readable `.npy` file nor a t5x checkpoint,
      or the table is not 2-D.
  """
  path = os.fspath(path)
  if not _exists(path):
    raise FileNotFoundError(f'embedding file {path} does not exist')
  if _isdir(path) or os.path.basename(path) == _MSGPACK_FILE:
    table = load_t5x_array(path, EMBEDDING_NAME)
  else:
    table = _load_npy(path, 'embedding file',
                      ' (nor a t5x checkpoint directory)')
  if table.ndim != 2:
    raise ValueError(f'embedding file {path} holds shape {table.shape}, '
                     'expected [vocab, embed]')
  return table


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
    params: nested dict of arrays (numpy or fully addressable jax arrays).
    path: local directory to create, e.g. `.../checkpoint_0`.
    step: written as `optimizer/state/step`.
    overwrite: replace an existing `path`.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
    ValueError: `path` is a gs:// URL, or a parameter name contains '.'.
  """
  path = os.fspath(path).rstrip('/')
  if _is_gcs(path):
    raise ValueError(f'save_t5x writes local directories only, got {path}')
  if os.path.lexists(path) and not overwrite:
    raise FileExistsError(f'{path} already exists; pass overwrite=True to '
                          'replace it')
  named, _ = _flatten_with_names(params)
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
          'target': _unflatten_dict(target),
          'state': {'step': np.asarray(step, np.int32)},
      },
  }

  tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  try:
    os.makedirs(tmp)
    _write_zarr_arrays({n: (resolve_tensorstore_spec(s, tmp), flat[n])
                        for n, s in zarr_specs.items()})
    _write_msgpack(os.path.join(tmp, _MSGPACK_FILE), contents)
    _replace_dir(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info('Wrote t5x checkpoint (%d parameters, step %d) to %s.',
               len(flat), step, path)


# ---------------------------------------------------------------------------
# HF transformers T5 safetensors.
# ---------------------------------------------------------------------------

_HF_EMBED_ALIASES = ('encoder.embed_tokens.weight',
                     'decoder.embed_tokens.weight')
_HF_ATTENTION = (('q', 'query'), ('k', 'key'), ('v', 'value'), ('o', 'out'))
_HF_MLP = ('wi_0', 'wi_1', 'wo')


def _hf_table(num_encoder_layers: int, num_decoder_layers: int,
              lm_head: bool) -> List[Tuple[str, str, bool]]:
  """(HF name, our name, transpose) for every parameter of a T5 1.1.

  HF `nn.Linear` weights are [out, in] and its relative attention tables are
  [buckets, heads]; ours are [in, out] and [heads, buckets], hence transpose.
  """
  table = [
      ('shared.weight', EMBEDDING_NAME, False),
      ('encoder.final_layer_norm.weight', 'encoder/encoder_norm/scale', False),
      ('decoder.final_layer_norm.weight', 'decoder/decoder_norm/scale', False),
  ]
  for stack in ('encoder', 'decoder'):
    table.append((f'{stack}.block.0.layer.0.SelfAttention.'
                  'relative_attention_bias.weight',
                  f'{stack}/relpos_bias/rel_embedding', True))
  # (stack, HF sublayer index, HF module, our module, our layer norm)
  sublayers = [('encoder', 0, 'SelfAttention', 'attention',
                'pre_attention_layer_norm'),
               ('encoder', 1, 'DenseReluDense', 'mlp', 'pre_mlp_layer_norm'),
               ('decoder', 0, 'SelfAttention', 'self_attention',
                'pre_self_attention_layer_norm'),
               ('decoder', 1, 'EncDecAttention', 'encoder_decoder_attention',
                'pre_cross_attention_layer_norm'),
               ('decoder', 2, 'DenseReluDense', 'mlp', 'pre_mlp_layer_norm')]
  counts = {'encoder': num_encoder_layers, 'decoder': num_decoder_layers}
  for stack, sub, hf_module, module, norm in sublayers:
    for i in range(counts[stack]):
      hf = f'{stack}.block.{i}.layer.{sub}'
      ours = f'{stack}/layers_{i}'
      table.append((f'{hf}.layer_norm.weight', f'{ours}/{norm}/scale', False))
      pairs = (_HF_ATTENTION if module != 'mlp' else [(m, m) for m in _HF_MLP])
      for hf_name, our_name in pairs:
        table.append((f'{hf}.{hf_module}.{hf_name}.weight',
                      f'{ours}/{module}/{our_name}/kernel', True))
  if lm_head:
    table.append(('lm_head.weight', 'decoder/logits_dense/kernel', True))
  return table


def _count_layers(names, pattern: str, source: str, what: str) -> int:
  matches = map(re.compile(pattern).match, names)
  indices = sorted({int(m.group(1)) for m in matches if m})
  if indices != list(range(len(indices))):
    raise ValueError(f'{source}: {what} layer indices {indices} are not '
                     f'0..{len(indices) - 1}')
  return len(indices)


def load_hf_safetensors(path: PathLike,
                        *,
                        num_layers: Optional[int] = None) -> Dict[str, Any]:
  """Reads an HF transformers T5 `model.safetensors` into our parameter tree.

  No torch is needed. `lm_head.weight`, when present, becomes
  `decoder/logits_dense/kernel` (T5 1.1 has an untied output projection);
  without it the tree is the tied (T5 1.0) variant. The HF file names one
  table `shared.weight` and may repeat it as `{encoder,decoder}.embed_tokens`;
  either name is accepted, and copies must be equal.

  Args:
    path: the `.safetensors` file.
    num_layers: if given, the encoder and decoder must both have this many
      layers.

  Returns:
    Nested dict of numpy arrays with flaxformer T5 names.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: unknown or missing HF names, embed_tokens copies that differ
      from `shared.weight`, or a layer count other than `num_layers`.
  """
  path = os.fspath(path)
  if not _exists(path):
    raise FileNotFoundError(f'safetensors file {path} does not exist')
  if _is_gcs(path):
    tensors = safetensors.numpy.load(_read_bytes(path))
  else:
    tensors = safetensors.numpy.load_file(path)
  shared = tensors.get('shared.weight')
  for alias in _HF_EMBED_ALIASES:
    copy_ = tensors.pop(alias, None)
    if copy_ is None:
      continue
    if shared is None:
      shared = tensors['shared.weight'] = copy_
    elif not np.array_equal(copy_, shared):
      raise ValueError(f'{path}: {alias} differs from shared.weight; expected '
                       'a copy of it')
  num_encoder = _count_layers(tensors, r'encoder\.block\.(\d+)\.', path,
                              'encoder')
  num_decoder = _count_layers(tensors, r'decoder\.block\.(\d+)\.', path,
                              'decoder')
  if num_layers is not None and (num_encoder, num_decoder) != (num_layers,) * 2:
    raise ValueError(f'{path}: {num_encoder} encoder and {num_decoder} decoder '
                     f'layers, expected num_layers={num_layers}')
  table = _hf_table(num_encoder, num_decoder, 'lm_head.weight' in tensors)
  unknown = sorted(set(tensors) - {hf for hf, _, _ in table})
  if unknown:
    raise ValueError(f'{path}: unknown HF T5 parameter names {unknown}')
  missing = [hf for hf, _, _ in table if hf not in tensors]
  if missing:
    raise ValueError(f'{path}: missing HF T5 parameters {missing}')
  flat = {ours: (tensors[hf].T.copy() if transpose else tensors[hf])
          for hf, ours, transpose in table}
  return _unflatten_dict(flat)


def save_hf_safetensors(params: PyTree, path: PathLike) -> None:
  """Writes our T5 parameter tree as an HF transformers `model.safetensors`.

  The inverse of `load_hf_safetensors`; `shared.weight` is also written as
  `encoder.embed_tokens.weight` and `decoder.embed_tokens.weight`. The file is
  written atomically (temporary sibling, then rename).

  Raises:
    ValueError: a parameter has no HF name (e.g. a prompt) or is missing.
  """
  path = os.fspath(path)
  flat = {n: np.asarray(x) for n, x in _flatten_with_names(params)[0]}
  num_encoder = _count_layers(flat, r'encoder/layers_(\d+)/', path, 'encoder')
  num_decoder = _count_layers(flat, r'decoder/layers_(\d+)/', path, 'decoder')
  table = _hf_table(num_encoder, num_decoder,
                    'decoder/logits_dense/kernel' in flat)
  unknown = sorted(set(flat) - {ours for _, ours, _ in table})
  if unknown:
    raise ValueError(f'{path}: parameters with no HF T5 name: {unknown}')
  missing = [ours for _, ours, _ in table if ours not in flat]
  if missing:
    raise ValueError(f'{path}: missing T5 parameters {missing}')
  tensors = {
      hf: np.ascontiguousarray(flat[ours].T if transpose else flat[ours])
      for hf, ours, transpose in table
  }
  for alias in _HF_EMBED_ALIASES:
    tensors[alias] = tensors['shared.weight']
  data = safetensors.numpy.save(tensors, metadata={'format': 'pt'})
  atomic_write_bytes(path, data)


# ---------------------------------------------------------------------------
# Prompt files.
# ---------------------------------------------------------------------------


def save_prompt(prompt: Any, path: PathLike) -> None:
  """Writes a prompt [P, H] (or a bank [N, P, H]) as a `.npy` file, atomically.

  The exact name `path` is used (np.save's '.npy' suffixing is bypassed).
  """
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(prompt), allow_pickle=False)
  atomic_write_bytes(os.fspath(path), buffer.getvalue())


def load_prompt(path: PathLike,
                expected_shape: Optional[Sequence[int]] = None) -> np.ndarray:
  """Reads a `.npy` prompt, checking its shape against `expected_shape`.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: unreadable file, or shape differs (both shapes named).
  """
  path = os.fspath(path)
  if not _exists(path):
    raise FileNotFoundError(f'prompt file {path} does not exist')
  prompt = _load_npy(path, 'prompt file')
  if expected_shape is not None and prompt.shape != tuple(expected_shape):
    raise ValueError(f'prompt file {path} holds shape {prompt.shape}, expected '
                     f'{tuple(expected_shape)}')
  return prompt
