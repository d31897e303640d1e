"""WVS cultural alignment ("multilingual is not multicultural"): value polarity of survey
populations, hypothetical-survey prompts, parsing of model responses, stance judging
(stages 1-6), and alignment, self-consistency and regressions (stages 7-10).

Each module's docstring states the table contract it produces or consumes. Stages 1-6
(rules/wvs.smk) write, under ``{RESULTS}/wvs/``:

- ``polarity.parquet`` (:mod:`.polarity`): level, group, question_key, polarity, n_valid,
  weight_sum, n_affirmative;
- ``human_consistency.parquet`` / ``human_consistency_summary.parquet`` (:mod:`.polarity`);
- ``country_languages.parquet``: country, language, name;
- ``prompts_en.parquet``, ``prompts/{language}.parquet`` (:mod:`.prompts`);
- ``responses/{model}/{language}/shard{shard}.parquet`` (:mod:`.prompts`);
- ``parsed/{model}.parquet`` (:mod:`.surveys`), ``judged/{model}/shard{shard}.parquet``;
- ``scored/{model}.parquet`` (:mod:`.stances`): one row per judged response with model,
  family, language, prompt_id, template_id, topic_variant_id, question_key, response_id,
  sample, n_items, n_pro, n_con, n_null, n_invalid, pro_score;
- ``drops/{translate,parse,judge}/...parquet``: stage, group, reason, dropped, total.
"""
