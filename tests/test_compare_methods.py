"""The method comparison command, on a tiny budget."""
import json

from prompt_tuning import compare_methods


def test_comparison_trains_evaluates_exports_and_measures(tmp_path, capsys):
  assert compare_methods.main([
      f'--output_dir={tmp_path}', '--methods=ia3', '--train_steps=2',
      '--gin.BATCH_SIZE=4', '--gin.trainer.train.eval_num_examples=8']) == 0
  printed = capsys.readouterr().out
  table = (tmp_path / 'comparison.md').read_text()
  assert table in printed
  assert table.startswith('taskless_offline_topic, 2 training steps')
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


def test_comparison_rejects_unknown_methods_and_existing_runs(tmp_path,
                                                              capsys):
  assert compare_methods.main([f'--output_dir={tmp_path}',
                               '--methods=lora,adapters']) == 2
  error = capsys.readouterr().err
  assert "unknown method 'adapters'; known methods: prompt_tuning" in error
  (tmp_path / 'lora').mkdir()
  assert compare_methods.main([f'--output_dir={tmp_path}',
                               '--methods=lora']) == 2
  assert 'pass --overwrite' in capsys.readouterr().err
