"""Distribution for prompt-tuning.

`tasks/` installs as `prompt_tuning.tasks` and `gin/` as package data under
`prompt_tuning/gin`, so a wheel install and a checkout behave the same and no
generic top-level name is put into site-packages.
"""
import pathlib

import setuptools

_ROOT = pathlib.Path(__file__).parent


def _gin_files():
  return [str(p.relative_to(_ROOT / 'gin')) for p in (_ROOT / 'gin').rglob('*.gin')]


_HF_SIDE_BY_SIDE = ['torch==2.13.0', 'transformers', 'peft']

setuptools.setup(
    name='prompt-tuning',
    version='0.1.0',
    description=('JAX/Flax reproduction of "The Power of Scale for '
                 'Parameter-Efficient Prompt Tuning" (Lester et al., 2021).'),
    long_description=(_ROOT / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=(['prompt_tuning']
              + [f'prompt_tuning.{p}' for p in
                 setuptools.find_packages(str(_ROOT / 'prompt_tuning'))]
              + ['prompt_tuning.tasks', 'prompt_tuning.gin']),
    package_dir={
        'prompt_tuning': 'prompt_tuning',
        'prompt_tuning.tasks': 'tasks',
        'prompt_tuning.gin': 'gin',
    },
    package_data={
        'prompt_tuning.gin': _gin_files(),
        'prompt_tuning.tasks': ['data/*'],
        # '.*' too: every zarr array of the shipped checkpoint has a .zarray.
        'prompt_tuning': ['data/**/*', 'data/**/.*'],
    },
    install_requires=[
        'jax>=0.4.30',
        'flax>=0.10',
        'optax',
        'seqio',
        'tensorflow-datasets',
        'tensorflow',
        'sentencepiece',
        'gin-config',
        'orbax-checkpoint',
        'tensorstore',
        'clu',
        'tensorboard',
        'scikit-learn',
        'scipy',
        'safetensors',
        'msgpack',
        'numpy',
        'absl-py',
        'tqdm',
        'matplotlib',
    ],
    extras_require={
        # wheel: tests/test_packaging.py builds a wheel without build isolation.
        'test': ['pytest', 'pytest-xdist', 'wheel'],
        # Only for the side-by-side comparisons against HF transformers and
        # PEFT (tests, `peft_interop`); torch 2.13.0 is the CPU build, any
        # other spec pulls CUDA packages.
        'hf': _HF_SIDE_BY_SIDE,
        # The benchmark's cases against HF PEFT (`python -m
        # prompt_tuning.bench`): the same packages, named for that use.
        'bench': _HF_SIDE_BY_SIDE,
        'gpu': ['jax[cuda12]'],
        'tpu': ['jax[tpu]'],
    },
    entry_points={
        'console_scripts': [],
    },
)
