"""The method comparison and export commands, on a tiny budget."""
import json

import numpy as np
import pytest
import safetensors.numpy

from prompt_tuning import compare_methods
from prompt_tuning import method_export
from prompt_tuning.cli import gin_utils


# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')


def _main(command, args):
  """Runs a command's main on its own flag registry, as `python -m` would."""
  argv, flag_values = gin_utils.parse_args(command.define_flags, args)
  return command.main(argv, flag_values)


@pytest.mark.slow
def test_comparison_trains_evaluates_exports_and_measures(tmp_path, capsys):
  assert _main(compare_methods, [
      f'--output_dir={tmp_path}', '--methods=ia3', '--train_steps=2',
      '--gin.BATCH_SIZE=4', '--gin.trainer.train.eval_num_examples=8',
      "--gin.EVAL_MODE='rank'"]) == 0
  printed = capsys.readouterr().out
  table = (tmp_path / 'comparison.md').read_text()
  assert table in printed
  assert table.startswith('corpus_topic_n32, 2 training steps')
  report = json.loads((tmp_path / 'comparison.json').read_text())
  assert report['train_steps'] == 2
  (row,) = report['rows']
  assert row['method'] == 'ia3'
  assert 0 <= row['untrained_score'] <= 100 and 0 <= row['tuned_score'] <= 100
  # k and v of 2 encoder and 2 x 2 decoder attentions (4 x 32 wide), the
  # MLP hidden (256) of 4 layers.
  assert row['trainable'] == 6 * 2 * 128 + 4 * 256
  assert row['step_seconds'] > 0 and row['step_bytes'] > 0
  assert row['export_kind'] == 'method params'
  export = tmp_path / 'ia3' / 'export' / 'method_params.safetensors'
  assert row['export_bytes'] == export.stat().st_size
  assert '| ia3 |' in table
  # The export command, given the run's gin files, writes the same export.
  assert _main(method_export, [
      '--gin_file=corpus/prompt_tune.gin', '--gin_file=methods/ia3.gin',
      f"--gin.MODEL_DIR='{tmp_path / 'ia3'}'", '--gin.BATCH_SIZE=4',
      f'--output_dir={tmp_path / "again"}']) == 0
  assert 'serve.gin' in capsys.readouterr().out
  again = safetensors.numpy.load_file(
      str(tmp_path / 'again' / 'method_params.safetensors'))
  first = safetensors.numpy.load_file(str(export))
  assert again.keys() == first.keys() and len(first) == 6 * 2 + 4
  for name, value in first.items():
    np.testing.assert_array_equal(again[name], value)


def test_comparison_rejects_unknown_methods_and_existing_runs(tmp_path,
                                                              capsys):
  assert _main(compare_methods, [f'--output_dir={tmp_path}',
                                 '--methods=lora,adapters']) == 2
  error = capsys.readouterr().err
  assert "unknown method 'adapters'; known methods: prompt_tuning" in error
  (tmp_path / 'lora').mkdir()
  assert _main(compare_methods, [f'--output_dir={tmp_path}',
                                 '--methods=lora']) == 2
  assert 'pass --overwrite' in capsys.readouterr().err
