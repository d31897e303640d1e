"""BLEnD short-answer evaluation: prompts, response cleaning, lemmatization and SEM-B / SEM-W.

Data layout (a local directory; the BLEnD release or the project's demo set)::

    questions/{Country}_questions.csv    ID, Topic, Question (local language), Translation (English)
    annotations/{Country}_data.json      {ID: {question, en_question, annotations, idks}}
    prompts/{Country}_prompts.csv        id, English, Translation (templates with a {q} slot)

Prompts. A run is one (country, language, prompt template). The language is English or the
country's language (``polyculture.languages.BLEND_REGIONS``); UK and US have English only.
English runs fill the template's ``English`` column with the question's English text
(``Translation``); local runs fill the template's ``Translation`` column with the local question
(``Question``). For UK/US the ``Question`` column is the native English text and is used.

Scoring rule (the BLEnD soft exact match, re-implemented from the paper's evaluation code):

1. Skip a question when no-answer + not-applicable ≥ 3, or idk ≥ 5, or it has no annotation
   clusters. The remaining questions are the valid ones (the denominator of both scores; a
   valid question without a response counts as wrong).
2. Clean the response: remove an echo of the prompt, map full-width punctuation (：、，。) to
   ASCII, lowercase, drop a leading ``label:`` whose word occurs in the prompt (``Answer:``,
   ``Απάντηση:``), strip whitespace and surrounding periods.
3. Walk the annotation clusters in vote order (count, descending; ties keep file order). In a
   local-language run a cluster is tried with its local answers, then its English answers; in
   an English run with its English answers only. The first cluster with a matching answer is
   the match.
4. An answer matches when (after the same punctuation mapping, lowercase and strip) it is a
   substring of the response, also with hyphens written as spaces or spaces as hyphens; or
   when every token of the lemmatized answer is among the tokens of the lemmatized response.
   Tokens are lowercased, accents are stripped (combining diacritics U+0300–U+036F after NFD,
   so Greek tonos and Spanish acute accents go, Hangul and Indic vowel signs stay) and
   punctuation/symbol tokens are dropped. Local answers are analysed in the country's
   language, English answers in English.
5. SEM-B = 100 × matched / valid. SEM-W = 100 × Σ(matched cluster's count / top count) / valid.

Lemmatizers per language (the official scorer, ``evaluation/exact_match.py`` of nlee0212/BLEnD,
uses spaCy, Okt, Spark NLP, CLTK, hazm, nlp_id, qalsadi, jieba and per-language stemmers; here the
official tool where it installs from PyPI and runs offline, else a maintained offline library,
else plain tokenization):

============================  ======================================================
fa                             hazm ``Lemmatizer`` per token (official tool; hazm 0.10.0)
id                             nlp_id ``Lemmatizer`` on the text, split on spaces (official
                               tool; nlp_id 0.1.23.0)
zh                             jieba word segmentation (official tool; no lemmas in Chinese)
en, el, es, ar                 simplemma (dictionary lemmatizer; its own tokenizer). Official:
                               spaCy en_core_web_sm, CLTK, Spark NLP, qalsadi (models that are
                               not on PyPI or need Java/Spark)
ko                             kiwipiepy morphemes: particles (J*) and endings (E*) dropped,
                               verb/adjective stems as dictionary forms (stem + 다), as the
                               official Okt with stem=True (Okt needs Java)
as, am, ha, su, az, others     fallback: split on whitespace and punctuation, no lemmas
                               (official: Indic trivial tokenizer for Assamese, stemmers for
                               Amharic, Hausa, Sundanese, Azerbaijani)
============================  ======================================================

hazm and nlp_id declare pins that clash with this project's (numpy==1.24.3; numpy==2.4.4,
scikit-learn==1.8.0, ...), so they are installed with ``pip install --no-deps`` (the Makefile
does it); what their lemmatizers import at run time (hazm: nltk, flashtext, python-crfsuite,
gensim, fasttext-wheel through its package ``__init__``; nlp_id: nothing beyond the standard
library for the lemmatizer) is in pyproject.toml. Both run offline: their word lists ship in the
wheels. Where one is not installed, the language falls back to simplemma with a warning, and
:func:`analyzer_name` says so.

Two rule sets (``rules=``; config ``evaluate.blend.scorer_rules``):

``polyculture`` (default) fixes three bugs of the official code, each an accident of it:

1. *Case-sensitive substring test on the raw answer.* The official ``lemma_check`` tests
   ``answer in llm_response`` with the annotated answer as written and the response lowercased,
   so a capitalised answer ("Paella") can only match through tokens. Here the answer is
   lowercased and punctuation-mapped as the response is.
2. *An empty answer matches any response.* ``'' in response`` is true, and an answer whose
   tokens are all punctuation gives an empty token list whose ``all()`` is true. The release has
   7 empty answers (1 local, 6 English). Here empty answers and answers with no tokens never
   match.
3. *A response "None" is read as missing.* The official scorer reads responses with
   ``pandas.read_csv``, whose default NA strings ("None", "NA", "null", "nan", "N/A", ...) turn
   such an answer into a float and then into "no response". Here a response is text.

and, less consequential: all combining diacritics are stripped, not only the acute accent;
punctuation tokens are any Unicode punctuation or symbol, not substrings of ASCII
``string.punctuation``; only the leading label is removed, not every later occurrence of its
text; Persian is split on punctuation as well as spaces before hazm lemmatizes it.

``official`` reproduces the official code's behaviour, bugs included (for comparisons with
published numbers): the three above and the less consequential ones, with the same lemmatizers
as ``polyculture``. The release lists clusters in vote order (checked on all 8,000 questions by
``tests/test_blend_parity.py``), so the official walk in file order with the first cluster's
count as the maximum is the walk in vote order here.
"""

from __future__ import annotations

from polyculture.blend.cleaning import (
    SCORER_RULES,
    SIMPLEMMA_LANGUAGES,
    _raw_tokens,
    analyzer_name,
    check_rules,
    clean_response,
    clean_response_official,
    fallback_tokens,
    lemma_tokens,
    normalize_text,
    official_tokens,
    strip_accents,
)
from polyculture.blend.data import (
    BLEND_SUBDIRS,
    PROMPT_COLUMNS,
    QUESTION_COLUMNS,
    Cluster,
    Question,
    annotations_path,
    available_countries,
    fetch_blend,
    load_annotations,
    load_prompt_templates,
    load_questions,
    parse_annotations,
    prompts_path,
    questions_path,
)
from polyculture.blend.prompts import (
    PROMPT_FORMATS,
    RESPONSE_SCHEMA,
    SKIP_IDK,
    SKIP_NO_ANSWER_NA,
    answer_prompts,
    build_prompts,
    country_prompts,
    run_languages,
    select_questions,
    skip_reason,
)
from polyculture.blend.scoring import (
    BLEND_LANGUAGE_NAMES,
    PANDAS_NA_STRINGS,
    PER_QUESTION_SCHEMA,
    RESPONSE_COLUMNS,
    SCORE_SCHEMA,
    Match,
    answer_matches,
    answer_matches_official,
    format_scores,
    match_question,
    normalize_language,
    prepare_responses,
    run_keys,
    score_generations,
    score_responses,
    score_run,
    summarize,
)

__all__ = [
    "BLEND_LANGUAGE_NAMES",
    "BLEND_SUBDIRS",
    "Cluster",
    "Match",
    "PANDAS_NA_STRINGS",
    "PER_QUESTION_SCHEMA",
    "PROMPT_COLUMNS",
    "PROMPT_FORMATS",
    "QUESTION_COLUMNS",
    "Question",
    "RESPONSE_COLUMNS",
    "RESPONSE_SCHEMA",
    "SCORER_RULES",
    "SCORE_SCHEMA",
    "SIMPLEMMA_LANGUAGES",
    "SKIP_IDK",
    "SKIP_NO_ANSWER_NA",
    "_raw_tokens",
    "analyzer_name",
    "annotations_path",
    "answer_matches",
    "answer_matches_official",
    "answer_prompts",
    "available_countries",
    "build_prompts",
    "country_prompts",
    "check_rules",
    "clean_response",
    "clean_response_official",
    "fallback_tokens",
    "fetch_blend",
    "format_scores",
    "lemma_tokens",
    "load_annotations",
    "load_prompt_templates",
    "load_questions",
    "match_question",
    "normalize_language",
    "normalize_text",
    "official_tokens",
    "parse_annotations",
    "prepare_responses",
    "prompts_path",
    "questions_path",
    "run_keys",
    "run_languages",
    "score_generations",
    "score_responses",
    "score_run",
    "select_questions",
    "skip_reason",
    "strip_accents",
    "summarize",
]
