"""The paper's published numbers, as data, for reference columns in reports.

Source: Lester, Al-Rfou and Constant (2021), "The Power of Scale for
Parameter-Efficient Prompt Tuning", EMNLP 2021, arXiv 2104.08691v2 (2 Sep
2021): Tables 1-4 and figures stated in the text, as checked against the
paper's text. Values are on the paper's 0-100 scale; `(mean, std)` pairs are
the paper's "mean ± std over 3 runs".

NOTE: the per-size scores plotted in Figures 1 and 3 were never printed as
numbers, so they are not here; a report draws no paper line for them and
says so. Only the statements made in the text about them are kept
(`FIGURE_STATEMENTS`).

Keys use this project's task and metric names (`prompt_tuning.tasks`):
metrics 'f1', 'exact_match', 'accuracy', 'mean_3class_f1' (CB), 'f1a'
(MultiRC).
"""
from typing import Dict, Tuple

MeanStd = Tuple[float, float]

# The frozen model of Tables 1-3.
TABLES_1_TO_3_MODEL = 'T5-XXL'

# Table 1: MRQA zero-shot domain transfer, trained on SQuAD v1.1, F1.
# eval task -> (row name, domain, model tuning, prompt tuning).
TABLE1_MRQA_F1: Dict[str, Tuple[str, str, MeanStd, MeanStd]] = {
    'squad_v110': ('SQuAD', 'Wiki', (94.9, 0.2), (94.8, 0.1)),
    'mrqa_textbook_qa_v100': ('TextbookQA', 'Book', (54.3, 3.7), (66.8, 2.9)),
    'mrqa_bio_asq_v100': ('BioASQ', 'Bio', (77.9, 0.4), (79.1, 0.3)),
    'mrqa_race_v100': ('RACE', 'Exam', (59.8, 0.6), (60.7, 0.5)),
    'mrqa_relation_extraction_v100': ('RE', 'Wiki', (88.4, 0.1), (88.8, 0.2)),
    'mrqa_duo_rc_v100': ('DuoRC', 'Movie', (68.9, 0.7), (67.7, 1.1)),
    'mrqa_drop_v100': ('DROP', 'Wiki', (68.9, 1.7), (67.1, 1.9)),
}

# Table 2: paraphrase zero-shot transfer (GLUE), on the target dataset.
# (source, target) -> method -> metric -> (mean, std).
TABLE2_PARAPHRASE: Dict[Tuple[str, str], Dict[str, Dict[str, MeanStd]]] = {
    ('qqp', 'mrpc'): {
        'model tuning': {'accuracy': (73.1, 0.9), 'f1': (81.2, 2.1)},
        'prompt tuning': {'accuracy': (76.3, 0.1), 'f1': (84.3, 0.3)},
    },
    ('mrpc', 'qqp'): {
        'model tuning': {'accuracy': (74.9, 1.3), 'f1': (70.9, 1.2)},
        'prompt tuning': {'accuracy': (75.4, 0.8), 'f1': (69.7, 0.3)},
    },
}

# Table 3: five prompts on one frozen T5-XXL, SuperGLUE dev.
# task -> metric -> (average prompt, best prompt, majority-vote ensemble).
TABLE3_ENSEMBLE: Dict[str, Dict[str, Tuple[float, float, float]]] = {
    'boolq': {'accuracy': (91.1, 91.3, 91.7)},
    'cb': {'accuracy': (99.3, 100.0, 100.0),
           'mean_3class_f1': (99.0, 100.0, 100.0)},
    'copa': {'accuracy': (98.8, 100.0, 100.0)},
    'multirc': {'exact_match': (65.7, 66.3, 67.1), 'f1a': (88.7, 89.0, 89.4)},
    'record': {'exact_match': (92.7, 92.9, 93.2), 'f1': (93.4, 93.5, 93.9)},
    'rte': {'accuracy': (92.6, 93.5, 93.5)},
    'wic': {'accuracy': (76.2, 76.6, 77.4)},
    'wsc': {'accuracy': (95.8, 96.2, 96.2)},
}
TABLE3_SUPERGLUE_SCORE: Tuple[float, float, float] = (90.5, 91.0, 91.3)

# Table 4: a 100-token prompt on each T5 1.1 size (prompt_tuning.model.t5.CONFIGS).
# size -> (trainable prompt parameters, total parameters with the prompt).
TABLE4_PROMPT_LENGTH = 100
TABLE4_PARAMETERS: Dict[str, Tuple[int, int]] = {
    'small': (51_200, 77_012_352),
    'base': (76_800, 247_654_656),
    'large': (102_400, 783_252_480),
    'xl': (204_800, 2_849_961_984),
    'xxl': (409_600, 11_135_741_952),
}

# Statements about Figures 1 and 3 made in the text (no per-size numbers).
FIGURE_STATEMENTS = (
    'Figure 1: prompt-tuned T5-Small matches GPT-3 XL; prompt-tuned T5-Large '
    'beats GPT-3 175B; at XXL prompt tuning matches multi-task model tuning '
    '(mean and std over 3 runs).',
    'Introduction: GPT-3 175B few-shot SuperGLUE 71.8 vs fine-tuned T5-XXL '
    '89.3 (Raffel et al. 2020).',
    'Figure 3(a): 20+ tokens give a large boost, beyond 20 marginal gains, '
    'past 100 mildly worse for larger models.',
    'Figure 3(c): span corruption works well for only 2 of 5 sizes.',
)
