"""The `nllb` translator: a seq2seq model through transformers (NLLB-200 style: source language
set on the tokenizer, target language forced as the first generated token), languages with a
FLORES-200 code in `FLORES200`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from polyculture.backends.generation.base import torch_dtype
from polyculture.backends.registry import TRANSLATORS
from polyculture.backends.translation.base import Translator, TranslatorSettings
from polyculture.errors import ConfigError

# ISO 639-1 → FLORES-200 code (the language tokens of NLLB-200); where a macrolanguage has
# several FLORES varieties the most widely used standard one is chosen (ar → Modern Standard
# Arabic, fa → Western Persian, az → North Azerbaijani (Latin), zh → Simplified Chinese).
# fmt: off
FLORES200: dict[str, str] = {
    "af": "afr_Latn", "ak": "aka_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng",
    "ay": "ayr_Latn", "az": "azj_Latn", "ba": "bak_Cyrl", "be": "bel_Cyrl", "bg": "bul_Cyrl",
    "bm": "bam_Latn", "bn": "ben_Beng", "bo": "bod_Tibt", "bs": "bos_Latn", "ca": "cat_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt",
    "ee": "ewe_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn",
    "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab", "ff": "fuv_Latn", "fi": "fin_Latn",
    "fj": "fij_Latn", "fo": "fao_Latn", "fr": "fra_Latn", "ga": "gle_Latn", "gd": "gla_Latn",
    "gl": "glg_Latn", "gn": "grn_Latn", "gu": "guj_Gujr", "ha": "hau_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
    "jv": "jav_Latn", "ka": "kat_Geor", "kg": "kon_Latn", "ki": "kik_Latn", "kk": "kaz_Cyrl",
    "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang", "ks": "kas_Arab", "ku": "kmr_Latn",
    "ky": "kir_Cyrl", "lb": "ltz_Latn", "lg": "lug_Latn", "li": "lim_Latn", "ln": "lin_Latn",
    "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn", "mi": "mri_Latn", "mk": "mkd_Cyrl",
    "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn", "mt": "mlt_Latn",
    "my": "mya_Mymr", "nb": "nob_Latn", "ne": "npi_Deva", "nl": "nld_Latn", "nn": "nno_Latn",
    "no": "nob_Latn", "ny": "nya_Latn", "oc": "oci_Latn", "om": "gaz_Latn", "or": "ory_Orya",
    "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab", "pt": "por_Latn", "qu": "quy_Latn",
    "rn": "run_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "rw": "kin_Latn", "sa": "san_Deva",
    "sc": "srd_Latn", "sd": "snd_Arab", "sg": "sag_Latn", "si": "sin_Sinh", "sk": "slk_Latn",
    "sl": "slv_Latn", "sm": "smo_Latn", "sn": "sna_Latn", "so": "som_Latn", "sq": "als_Latn",
    "sr": "srp_Cyrl", "ss": "ssw_Latn", "st": "sot_Latn", "su": "sun_Latn", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "ti": "tir_Ethi", "tk": "tuk_Latn", "tl": "tgl_Latn", "tn": "tsn_Latn", "tr": "tur_Latn",
    "ts": "tso_Latn", "tt": "tat_Cyrl", "ug": "uig_Arab", "uk": "ukr_Cyrl", "ur": "urd_Arab",
    "uz": "uzn_Latn", "vi": "vie_Latn", "wo": "wol_Latn", "xh": "xho_Latn", "yi": "ydd_Hebr",
    "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
}
# fmt: on


class NLLBTranslator(Translator):
    """A seq2seq translation model with FLORES-200 language tokens (NLLB-200 style): the source
    code is set as the tokenizer's src_lang, the target code is forced as the first token."""

    kind = "nllb"

    def __init__(
        self, model: str, max_new_tokens: int, batch_size: int = 16, device: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        local = Path(model).is_dir()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
        if not hasattr(self.tokenizer, "src_lang"):
            raise ConfigError(
                "translator.model",
                f"{model}: the tokenizer has no src_lang (not an NLLB-style tokenizer)",
            )
        self.model = (
            AutoModelForSeq2SeqLM.from_pretrained(
                model, dtype=torch_dtype("auto", self.device), local_files_only=local
            )
            .to(self.device)
            .eval()
        )
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        max_len = getattr(self.tokenizer, "model_max_length", 1024) or 1024
        self.max_input_tokens = min(int(max_len), 1024)

    def supports(self, lang: str) -> bool:
        return lang in FLORES200

    def lang_token_id(self, lang: str) -> int:
        """The id of the FLORES-200 language token of `lang`; fails when the tokenizer lacks it."""
        code = FLORES200[lang]
        tid = self.tokenizer.convert_tokens_to_ids(code)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ConfigError(
                "translator.model", f"the tokenizer has no language token {code} (for '{lang}')"
            )
        return int(tid)

    def generate_ids(self, texts: list[str], source: str, target: str) -> Any:
        """Output token ids (decoder start and forced target token included) for one batch."""
        import torch

        self.lang_token_id(source)
        self.tokenizer.src_lang = FLORES200[source]
        enc = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_input_tokens,
        ).to(self.device)
        with torch.inference_mode():
            return self.model.generate(
                **enc,
                forced_bos_token_id=self.lang_token_id(target),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
            )

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        from tqdm import tqdm

        out: list[str] = [""] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_, s, t) in enumerate(items):
            groups.setdefault((s, t), []).append(i)
        bar = tqdm(total=len(items), desc="translate (nllb)", unit="text", file=sys.stderr)
        for (s, t), idx in groups.items():
            idx = sorted(idx, key=lambda i: -len(items[i][0]))
            for start in range(0, len(idx), self.batch_size):
                batch = idx[start : start + self.batch_size]
                ids = self.generate_ids([items[i][0] for i in batch], s, t)
                texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
                for i, text in zip(batch, texts, strict=True):
                    out[i] = text.strip()
                bar.update(len(batch))
        bar.close()
        return out


@TRANSLATORS.register("nllb", needs_model=True)
def load_nllb(settings: TranslatorSettings, *, batch_size: int = 16, **_: Any) -> NLLBTranslator:
    """An NLLBTranslator of the settings' model (the generation options do not apply)."""
    return NLLBTranslator(str(settings.model), settings.max_new_tokens, batch_size=batch_size)
