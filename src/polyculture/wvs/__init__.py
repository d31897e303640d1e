"""WVS cultural alignment ("multilingual is not multicultural"): value polarity of survey
populations, hypothetical-survey prompts, parsing of model responses, stance judging
(stages 1-6), and alignment, self-consistency and regressions (stages 7-10).

Each module's docstring states the table contract it produces or consumes."""
