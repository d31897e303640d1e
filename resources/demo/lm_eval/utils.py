"""Document processing of the demo HellaSwag-style tasks (referenced from the task YAMLs)."""

import re


def _clean(text: str) -> str:
    """Trim, drop bracketed markup such as '[title]', collapse double spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def process_hellaswag(dataset):
    """Add query (activity label + context), choices (the endings) and gold (label as int)."""

    def one(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"][:1].upper() + doc["ctx_b"][1:]
        return {
            "query": _clean(doc["activity_label"] + ": " + ctx),
            "choices": [_clean(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)
