"""A model's device mesh and parameters: loaded from a t5x checkpoint (or an
HF model folder) where it has them, freshly initialised where not (e.g. the
prompt).

`setup_model` is the one way training, evaluation, inference, serving and
export lay out a model: the mesh and logical axis rules, then only the
parameters that the assignment map leaves out of the checkpoint are
initialised, each directly with its sharding.
"""
import dataclasses
import os
import re
from typing import Any, Optional, Sequence, Tuple

import jax
import numpy as np

from prompt_tuning.checkpoints import hf_folders
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import models
from prompt_tuning.model import prompts
from prompt_tuning.training import partitioning
from prompt_tuning.utils import files
from prompt_tuning.utils import trees

PyTree = Any


def load_initial_params(model: models.EncoderDecoderModel,
                        initial_checkpoint_path: Optional[str],
                        assignment_map: Sequence[Tuple[str, Optional[str]]],
                        rng: jax.Array, shardings: PyTree,
                        abstract: PyTree) -> PyTree:
  """Parameters laid out by `shardings`: from the checkpoint where it has them,
  freshly initialised where `assignment_map` says None (e.g. the prompt).

  Only the parameters to initialise are computed: the jitted init returns just
  those, and XLA drops the rest of the work.

  `initial_checkpoint_path` is a t5x checkpoint or an HF model folder (as
  `save_pretrained` or a hub download leaves it); the folder's `config.json`
  must agree with the model's config on every architecture field.
  """
  flat_abstract = trees.flatten(abstract)
  if initial_checkpoint_path is None:
    to_init = set(flat_abstract)
  else:
    rules = [(re.compile(p), r) for p, r in assignment_map]

    def first_rule(name):
      # t5x semantics, as in `t5x.load_t5x`: the first match wins.
      return next((r for p, r in rules if p.fullmatch(name)), '')

    to_init = {n for n in flat_abstract if first_rule(n) is None}
  flat_shardings = trees.flatten(shardings)

  def init_subset(key):
    flat = trees.flatten(partitioning.unbox(model.init(key)))
    return {n: flat[n] for n in sorted(to_init)}

  initialised = jax.jit(init_subset, out_shardings={
      n: flat_shardings[n] for n in sorted(to_init)})(rng) if to_init else {}
  if initial_checkpoint_path is None:
    return trees.unflatten(initialised)
  like = {n: (np.asarray(initialised[n]) if n in initialised else v)
          for n, v in flat_abstract.items()}
  if hf_folders.is_hf_model(initial_checkpoint_path):
    restored = hf_folders.load_hf_checkpoint(
        initial_checkpoint_path, like=trees.unflatten(like),
        assignment_map=assignment_map,
        model_config=getattr(model.module, 'config', None))
  else:
    restored = t5x.load_t5x(initial_checkpoint_path,
                            like=trees.unflatten(like),
                            assignment_map=assignment_map)
  loaded = trees.flatten(restored)
  placed = {}
  for name, value in loaded.items():
    if name in initialised:
      placed[name] = initialised[name]
    else:
      array = np.asarray(value)
      placed[name] = jax.make_array_from_callback(
          array.shape, flat_shardings[name], lambda index, a=array: a[index])
  return trees.unflatten(placed)


@dataclasses.dataclass
class ModelSetup:
  """A device mesh, its rules, and the model's parameters laid out on it."""
  mesh: Any
  rules: partitioning.LogicalAxisRules
  params: PyTree
  shardings: PyTree


def setup_model(model: models.EncoderDecoderModel,
                initial_checkpoint_path: Optional[str],
                assignment_map: Sequence[Tuple[str, Optional[str]]] = (
                    (prompts.PROMPT_REGEX, None),),
                seed: int = 0,
                mesh_config: partitioning.MeshConfig = (
                    partitioning.MeshConfig()),
                logical_axis_rules: Optional[
                    partitioning.LogicalAxisRules] = None) -> ModelSetup:
  """Builds the mesh and loads (or initialises) the parameters on it.

  Shared by training, evaluation, inference, serving and export.

  Raises:
    FileNotFoundError: `initial_checkpoint_path` does not exist.
  """
  if initial_checkpoint_path is not None and not (
      files.is_gcs(initial_checkpoint_path)
      or os.path.exists(initial_checkpoint_path)):
    raise FileNotFoundError(
        f'INITIAL_CHECKPOINT_PATH {initial_checkpoint_path} does not exist')
  rules = logical_axis_rules or partitioning.standard_logical_axis_rules(
      mesh_config.num_partitions)
  mesh = partitioning.create_mesh(mesh_config)
  init_rng = jax.random.split(jax.random.PRNGKey(seed))[0]
  abstract_boxed = jax.eval_shape(model.init, init_rng)
  shardings = partitioning.logical_to_mesh_shardings(abstract_boxed, mesh,
                                                     rules)
  # Unboxed outside the mesh context: under it, flax would constrain the
  # abstract values' shardings.
  abstract = partitioning.unbox(abstract_boxed)
  with partitioning.mesh_context(mesh, rules):
    params = load_initial_params(model, initial_checkpoint_path,
                                 assignment_map, init_rng, shardings, abstract)
  return ModelSetup(mesh=mesh, rules=rules, params=params, shardings=shardings)
