"""Files on local disk or on gs://, the latter through `tf.io.gfile`.

TensorFlow is heavy and only needed for gs:// paths, so it is imported only
when one is used.
"""
import os
from typing import List
import uuid


def is_gcs(path: str) -> bool:
  """Whether `path` is a gs:// URL (read and written through gfile)."""
  return path.startswith('gs://')


def gfile():
  """The `tf.io.gfile` module, imported on first use."""
  from tensorflow.io import gfile as tf_gfile  # pylint: disable=g-import-not-at-top
  return tf_gfile


def exists(path: str) -> bool:
  return gfile().exists(path) if is_gcs(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return gfile().isdir(path) if is_gcs(path) else os.path.isdir(path)


def listdir(path: str) -> List[str]:
  """The names in directory `path` (gfile's trailing '/' of folders dropped)."""
  if is_gcs(path):
    return [p.rstrip('/') for p in gfile().listdir(path)]
  return os.listdir(path)


def read_bytes(path: str) -> bytes:
  if is_gcs(path):
    with gfile().GFile(path, 'rb') as f:
      return f.read()
  with open(path, 'rb') as f:
    return f.read()


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to a temporary sibling of `path`, then renames it, so the
  file is never seen half-written; local paths and gs://."""
  tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  if is_gcs(path):
    tf_gfile = gfile()
    try:
      with tf_gfile.GFile(tmp, 'wb') as f:
        f.write(data)
      tf_gfile.rename(tmp, path, overwrite=True)
    except BaseException:
      if tf_gfile.exists(tmp):
        tf_gfile.remove(tmp)
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
