"""SPoT: task-embedding similarity, the ranking, and the command."""
import json

import numpy as np
import pytest

from prompt_tuning.checkpoints import prompt_files
from prompt_tuning import spot
from prompt_tuning.cli import gin_utils
from prompt_tuning.experiments import spot as spot_lib


# XLA's optimisations off: see conftest.fast_compiles.
pytestmark = pytest.mark.usefixtures('fast_compiles')


def _main(command, args):
  """Runs a command's main on its own flag registry, as `python -m` would."""
  argv, flag_values = gin_utils.parse_args(command.define_flags, args)
  return command.main(argv, flag_values)


def test_metrics():
  rng = np.random.RandomState(0)
  a = rng.randn(5, 7)
  for metric in spot_lib.METRICS.values():
    assert metric(a, -a) == pytest.approx(-metric(a, a))
  assert spot_lib.average_tokens_cosine(a, a) == pytest.approx(1.0)
  assert spot_lib.average_tokens_cosine(a, 3 * a) == pytest.approx(1.0)
  # Per token: the mean over all P x Q pairs.
  b = rng.randn(3, 7)
  expected = np.mean([[x @ y / np.linalg.norm(x) / np.linalg.norm(y)
                       for y in b] for x in a])
  assert spot_lib.per_token_cosine(a, b) == pytest.approx(expected)
  e0, e1 = np.eye(7)[:1], np.eye(7)[1:2]
  assert spot_lib.average_tokens_cosine(e0, e1) == pytest.approx(0.0)


def test_rank_sources_orders_by_similarity():
  rng = np.random.RandomState(1)
  target = rng.randn(4, 6)
  sources = {'near': target + 0.1 * rng.randn(4, 6),
             'far': rng.randn(4, 6), 'opposite': -target}
  ranking = spot_lib.rank_sources(target, sources)
  assert [task for task, _ in ranking] == ['near', 'far', 'opposite']
  assert ranking[0][1] > 0.9 and ranking[-1][1] == pytest.approx(-1.0)


@pytest.mark.parametrize('target, sources, metric, message', [
    (np.zeros((2, 3)), {'a': np.ones((2, 3))}, 'euclid',
     "unknown SPoT metric 'euclid'"),
    (np.zeros((2, 3)), {}, 'per_token', 'no source tasks'),
    (np.ones((2, 3)), {'a': np.ones((2, 4))}, 'per_token',
     'task embedding of a has width 4, the target\'s 3'),
    (np.ones((2, 3)), {'a': np.ones((1, 2, 3))}, 'per_token',
     r'task embedding a has shape \(1, 2, 3\); expected a prompt \[P, H\]'),
])
def test_rank_sources_errors(target, sources, metric, message):
  with pytest.raises(ValueError, match=message):
    spot_lib.rank_sources(target, sources, metric)


def test_command_ranks_given_embeddings(tmp_path, capsys):
  rng = np.random.RandomState(2)
  target = rng.randn(4, 6)
  files = {}
  for task, value in (('t', target), ('near', target + 0.1), ('far', -target)):
    files[task] = str(tmp_path / f'{task}.npy')
    prompt_files.save_prompt(value, files[task])
  argv = [f'--output_dir={tmp_path / "out"}', '--target=t',
          '--sources=far,near', '--metric=per_token',
          '--source_prompt=near=/prompts/near.npy']
  argv += [f'--embedding_file={t}={p}' for t, p in files.items()]
  assert _main(spot, argv) == 0
  printed = capsys.readouterr().out
  assert '| 1 | near |' in printed and '| 2 | far |' in printed
  assert ('--gin_file=prompts/from_file.gin '
          '--gin.PROMPT_FILE="\'/prompts/near.npy\'"') in printed
  report = json.loads((tmp_path / 'out' / 'spot.json').read_text())
  assert [r['task'] for r in report['ranking']] == ['near', 'far']
  assert report['metric'] == 'per_token'


def test_command_rejects_bad_flags(tmp_path, capsys):
  assert _main(spot, [f'--output_dir={tmp_path}', '--target=a',
                      '--sources=a,b']) == 2
  assert 'includes the target a' in capsys.readouterr().err
  assert _main(spot, [f'--output_dir={tmp_path}', '--target=a', '--sources=b',
                      '--source_prompt=b']) == 2
  assert "--source_prompt 'b' is not TASK=PATH" in capsys.readouterr().err


@pytest.mark.slow
def test_command_trains_task_embeddings(tmp_path, capsys):
  """The target's embedding is given; the source's is trained (two steps of
  the embedded main job)."""
  target = str(tmp_path / 'target.npy')
  prompt_files.save_prompt(np.ones((20, 128), np.float32), target)
  source = 'taskless_offline_sentiment'
  assert _main(spot, [f'--output_dir={tmp_path / "out"}',
                      '--target=taskless_offline_topic', f'--sources={source}',
                      f'--embedding_file=taskless_offline_topic={target}',
                      '--embedding_steps=2', '--gin.BATCH_SIZE=4']) == 0
  assert f'| 1 | {source} |' in capsys.readouterr().out
  embedding = np.load(tmp_path / 'out' / source / spot_lib.EMBEDDING_FILE)
  assert embedding.shape == (20, 128)
  assert (tmp_path / 'out' / source / 'train_state' / '2').exists()
