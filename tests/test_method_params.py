"""The parameter table: counts from the abstract tree, checked in closed form."""
import json

import pytest

from prompt_tuning import method_params
from prompt_tuning.methods import presets as presets_lib
from prompt_tuning.experiments import parameter_counts
from prompt_tuning.model import costs
from prompt_tuning.model import t5
from prompt_tuning.cli import gin_utils


def _main(command, args):
  """Runs a command's main on its own flag registry, as `python -m` would."""
  argv, flag_values = gin_utils.parse_args(command.define_flags, args)
  return command.main(argv, flag_values)


@pytest.fixture(scope='module')
def paper_rows():
  presets = [presets_lib.PRESETS['prompt_tuning'],
             presets_lib.PRESETS['model_tuning']]
  return parameter_counts.count_all(presets, t5.CONFIGS, 100)


@pytest.mark.slow
def test_prompt_tuning_row_is_prompt_length_times_d_model(paper_rows):
  for row in paper_rows:
    if row.method == 'prompt_tuning':
      assert row.trainable == 100 * t5.CONFIGS[row.size].emb_dim


@pytest.mark.slow
def test_model_tuning_row_is_the_full_parameter_count(paper_rows):
  rows = [r for r in paper_rows if r.method == 'model_tuning']
  assert [r.size for r in rows] == list(t5.CONFIGS)
  for row in rows:
    assert row.trainable == row.frozen_model == costs.count_parameters(
        t5.CONFIGS[row.size])
    assert row.percent == 100.0
  # The paper's Table 4 counts XXL with its 100-token prompt.
  assert rows[-1].trainable + 100 * 4096 == 11_135_741_952


@pytest.mark.parametrize('name, closed_form', [
    # q and v of 8 encoder and 2 x 8 decoder attentions, [512, 384] each.
    ('lora', lambda c: 24 * 2 * 4 * (c.emb_dim + c.num_heads * c.head_dim)),
    # keys and values of 8 encoder layers, [P, N*D] each.
    ('p_tuning_v2', lambda c: 8 * 2 * 100 * c.num_heads * c.head_dim),
    # k and v of 24 attentions, the MLP hidden of 16 layers.
    ('ia3', lambda c: 24 * 2 * c.num_heads * c.head_dim + 16 * c.mlp_dim),
    # 8 + 3 * 8 layer norms and the two final ones.
    ('norm_scale', lambda c: (8 * 2 + 8 * 3 + 2) * c.emb_dim),
    # 2 + 3 sublayers per layer, each down [H, 64] + 64, up [64, H] + H.
    ('adapter_houlsby', lambda c: 40 * (2 * 64 * c.emb_dim + 64 + c.emb_dim)),
])
def test_method_rows_match_closed_forms_at_small(name, closed_form):
  config = t5.CONFIGS['small']
  row = parameter_counts.count(config, presets_lib.PRESETS[name], 100,
                               'small')
  assert row.trainable == closed_form(config)
  assert row.frozen_model == costs.count_parameters(config)


@pytest.mark.parametrize('name', sorted(presets_lib.PRESETS))
@pytest.mark.parametrize('depths', [(4, 3), (3, 3)])
def test_counts_from_one_and_two_layers_equal_the_whole_tree(tiny_config,
                                                             name, depths):
  """`count` extends 1- and 2-layer counts to the depth (unequal stacks and
  equal ones, which take a shorter way); every preset must give what
  counting its whole tree gives."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  config = dataclasses.replace(tiny_config, num_encoder_layers=depths[0],
                               num_decoder_layers=depths[1])
  preset = presets_lib.PRESETS[name]
  row = parameter_counts.count(config, preset, 5)
  trainable, frozen = parameter_counts.count_tree(config, preset, 5)
  assert (row.trainable, row.frozen_model) == (trainable, frozen)
  assert row.trainable > 0


def test_command_writes_the_table_and_figure(tmp_path, capsys):
  assert _main(method_params, [f'--output_dir={tmp_path}', '--sizes=small',
                               '--methods=prompt_tuning,lora',
                               '--prompt_length=20']) == 0
  printed = capsys.readouterr().out
  table = (tmp_path / 'method_params.md').read_text()
  assert table in printed
  assert '| prompt_tuning | 10,240 (0.0133%) |' in table
  assert '| lora | 172,032 (0.224%) |' in table
  assert (tmp_path / 'method_params.png').read_bytes()[:4] == b'\x89PNG'
  rows = json.loads((tmp_path / 'method_params.json').read_text())
  assert [(r['method'], r['size']) for r in rows] == [
      ('prompt_tuning', 'small'), ('lora', 'small')]


def test_command_rejects_an_unknown_method(tmp_path, capsys):
  assert _main(method_params, [f'--output_dir={tmp_path}',
                               '--methods=lora,bitfit']) == 2
  error = capsys.readouterr().err
  assert "unknown method ['bitfit']" in error
  assert 'prompt_tuning, p_tuning' in error
