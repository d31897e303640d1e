"""Cross-lingual consensus: self-supervised cultural training data (docs/design.md §1).

statements → knowledge paragraphs → bilingual questions → N sampled answers per language →
embeddings → intra-language consistency → ground truth from the stronger language →
critique of a weak-language answer → six-turn training dialogues mixed with general data.
"""
