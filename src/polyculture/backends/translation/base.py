"""Translation behind one interface, three kinds:

- `llm`: the chat model itself, prompted to translate (greedy); any ISO 639-1 language.
- `nllb`: a seq2seq model through transformers (NLLB-200 style: source language set on the
  tokenizer, target language forced as the first generated token), languages with a
  FLORES-200 code in `FLORES200`.
- `google`: the Cloud Translation API v2 over HTTPS, key from the environment variable
  GOOGLE_API_KEY only (never from the config, never logged).

`Translator.translate(texts, source, target)` takes one language code or one per text for each
side. Texts whose source equals their target, and empty (blank) texts, come back unchanged
without a model call; identical (text, source, target) triples are translated once."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyculture.errors import ConfigError
from polyculture.languages import is_language_code, language_name

log = logging.getLogger(__name__)

KINDS = ("llm", "nllb", "google")
GOOGLE_KEY_ENV = "GOOGLE_API_KEY"
GOOGLE_ENDPOINT = "https://translation.googleapis.com/language/translate/v2"
GOOGLE_MAX_SEGMENTS = 100  # the API takes at most 128 segments per request
GOOGLE_MAX_CHARS = 20_000  # and recommends well under 30k code points per request

LLM_PROMPT = (
    "Translate the following text from {source} into {target}. "
    "Reply with the translation only.\n\n{text}"
)

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

# ISO 639-1 codes that Cloud Translation v2 accepts (its published language list, 639-1 only).
GOOGLE_LANGUAGES: frozenset[str] = frozenset(
    [
        "af",
        "ak",
        "am",
        "ar",
        "as",
        "ay",
        "az",
        "ba",
        "be",
        "bg",
        "bm",
        "bn",
        "bo",
        "bs",
        "ca",
        "co",
        "cs",
        "cv",
        "cy",
        "da",
        "de",
        "dv",
        "dz",
        "ee",
        "el",
        "en",
        "eo",
        "es",
        "et",
        "eu",
        "fa",
        "ff",
        "fi",
        "fj",
        "fo",
        "fr",
        "fy",
        "ga",
        "gd",
        "gl",
        "gn",
        "gu",
        "gv",
        "ha",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "ig",
        "is",
        "it",
        "ja",
        "jv",
        "ka",
        "kg",
        "kk",
        "km",
        "kn",
        "ko",
        "kr",
        "ku",
        "ky",
        "la",
        "lb",
        "lg",
        "li",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mh",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "no",
        "nr",
        "ny",
        "oc",
        "om",
        "or",
        "os",
        "pa",
        "pl",
        "ps",
        "pt",
        "qu",
        "rn",
        "ro",
        "ru",
        "rw",
        "sa",
        "sd",
        "se",
        "sg",
        "si",
        "sk",
        "sl",
        "sm",
        "sn",
        "so",
        "sq",
        "sr",
        "ss",
        "st",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "ti",
        "tk",
        "tl",
        "tn",
        "to",
        "tr",
        "ts",
        "tt",
        "ty",
        "ug",
        "uk",
        "ur",
        "uz",
        "ve",
        "vi",
        "wo",
        "xh",
        "yi",
        "yo",
        "zh",
        "zu",
        "ab",
        "br",
        "ce",
        "ch",
        "kl",
        "kv",
    ]
)


@dataclass(frozen=True)
class TranslatorSettings:
    """The config's `translator:` section: kind (llm | nllb | google), model (a loadable path or
    hub id, for llm and nllb) and the token budget of one translation."""

    kind: str
    model: str | None = None
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                "translator.kind", f"unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        if self.kind in ("llm", "nllb") and not self.model:
            raise ConfigError("translator.model", f"kind '{self.kind}' needs a model")
        if self.model and self.model.startswith("builtin:"):
            raise ConfigError(
                "translator.model", f"'{self.model}' is a model spec; resolve it to a path first"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(
                "translator.max_new_tokens", f"expected >= 1, got {self.max_new_tokens}"
            )


def per_text(codes: str | Sequence[str], n: int, side: str) -> list[str]:
    """One language code per text: a single code repeated, or a sequence of length n."""
    if isinstance(codes, str):
        return [codes] * n
    codes = list(codes)
    if len(codes) != n:
        raise ConfigError(side, f"expected one language code per text ({n}), got {len(codes)}")
    return codes


class Translator:
    """Translates texts between ISO 639-1 languages; subclasses implement `_translate_unique`."""

    kind: str = ""

    def supports(self, lang: str) -> bool:
        """Whether this translator can translate from and into `lang`."""
        raise NotImplementedError

    def _check_codes(self, codes: list[str], side: str) -> None:
        for i, code in enumerate(codes):
            if not isinstance(code, str) or not is_language_code(code):
                raise ConfigError(f"{side}[{i}]", f"{code!r} is not an ISO 639-1 language code")
            if not self.supports(code):
                raise ConfigError(
                    f"{side}[{i}]", f"the {self.kind} translator does not support language '{code}'"
                )

    def translate(
        self,
        texts: Sequence[str],
        source: str | Sequence[str],
        target: str | Sequence[str],
    ) -> list[str]:
        """Translations of `texts` (one per text, in order) from source into target language(s)."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"texts[{i}]", f"expected a string, got {type(t).__name__}")
        src = per_text(source, len(texts), "source")
        tgt = per_text(target, len(texts), "target")
        self._check_codes(src, "source")
        self._check_codes(tgt, "target")
        out = list(texts)
        todo: dict[tuple[str, str, str], list[int]] = {}
        for i, (text, s, t) in enumerate(zip(texts, src, tgt, strict=True)):
            if s != t and text.strip():
                todo.setdefault((text, s, t), []).append(i)
        if not todo:
            return out
        keys = list(todo)
        done = self._translate_unique(keys)
        if len(done) != len(keys):
            raise RuntimeError(f"{self.kind} translator returned {len(done)} texts for {len(keys)}")
        for key, translation in zip(keys, done, strict=True):
            for i in todo[key]:
                out[i] = translation
        return out

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        """Translations of distinct (text, source, target) triples with source != target."""
        raise NotImplementedError


def llm_translation_prompt(text: str, source: str, target: str) -> str:
    """The user message that asks a chat model for a translation."""
    return LLM_PROMPT.format(source=language_name(source), target=language_name(target), text=text)


class LLMTranslator(Translator):
    """A chat model prompted to translate, greedy, one conversation per text."""

    kind = "llm"

    def __init__(self, generator: Any, max_new_tokens: int, seed: int = 0) -> None:
        from polyculture.backends.generation.base import Sampling

        self.generator = generator
        self.sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)

    def supports(self, lang: str) -> bool:
        return is_language_code(lang)

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        convs = [[{"role": "user", "content": llm_translation_prompt(*item)}] for item in items]
        return [row[0] for row in self.generator.generate(convs, n=1, sampling=self.sampling)]


class NLLBTranslator(Translator):
    """A seq2seq translation model with FLORES-200 language tokens (NLLB-200 style): the source
    code is set as the tokenizer's src_lang, the target code is forced as the first token."""

    kind = "nllb"

    def __init__(
        self, model: str, max_new_tokens: int, batch_size: int = 16, device: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from polyculture.backends.generation.base import torch_dtype

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


def google_api_key() -> str:
    """The Cloud Translation API key from the environment; fails naming the variable."""
    key = os.environ.get(GOOGLE_KEY_ENV, "").strip()
    if not key:
        raise ConfigError(
            "translator.kind",
            f"kind 'google' needs an API key in the environment variable {GOOGLE_KEY_ENV} "
            "(it is never read from the config)",
        )
    return key


def google_request(
    texts: Sequence[str], source: str, target: str, key: str
) -> urllib.request.Request:
    """The HTTPS request that translates `texts` with Cloud Translation v2 (key in a header, so
    that it never appears in a URL or log)."""
    body = json.dumps(
        {"q": list(texts), "source": source, "target": target, "format": "text"}, ensure_ascii=False
    ).encode("utf-8")
    return urllib.request.Request(
        GOOGLE_ENDPOINT,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "X-Goog-Api-Key": key},
    )


def parse_google_response(payload: bytes, expected: int) -> list[str]:
    """The translated texts of a Cloud Translation v2 response body."""
    try:
        data = json.loads(payload)
        translations = [t["translatedText"] for t in data["data"]["translations"]]
    except (ValueError, KeyError, TypeError) as err:
        raise RuntimeError(
            f"Cloud Translation: unexpected response ({err}): {payload[:300]!r}"
        ) from None
    if len(translations) != expected:
        raise RuntimeError(
            f"Cloud Translation: {len(translations)} translations for {expected} texts"
        )
    return translations


def google_chunks(texts: Sequence[str]) -> list[list[int]]:
    """Indexes of `texts` split into requests of at most GOOGLE_MAX_SEGMENTS segments and about
    GOOGLE_MAX_CHARS characters."""
    chunks: list[list[int]] = []
    cur: list[int] = []
    chars = 0
    for i, t in enumerate(texts):
        if cur and (len(cur) >= GOOGLE_MAX_SEGMENTS or chars + len(t) > GOOGLE_MAX_CHARS):
            chunks.append(cur)
            cur, chars = [], 0
        cur.append(i)
        chars += len(t)
    if cur:
        chunks.append(cur)
    return chunks


class GoogleTranslator(Translator):
    """Cloud Translation API v2 (REST); retries on rate limits and server errors."""

    kind = "google"

    def __init__(self, attempts: int = 5, timeout: float = 60.0) -> None:
        self._key = google_api_key()
        self.attempts = attempts
        self.timeout = timeout

    def __repr__(self) -> str:
        return "GoogleTranslator()"

    def supports(self, lang: str) -> bool:
        return lang in GOOGLE_LANGUAGES

    def _post(self, texts: list[str], source: str, target: str) -> list[str]:
        for attempt in range(self.attempts):
            req = google_request(texts, source, target, self._key)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return parse_google_response(resp.read(), len(texts))
            except urllib.error.HTTPError as err:
                detail = err.read()[:500].decode("utf-8", "replace")
                if err.code in (429, 500, 502, 503, 504) and attempt + 1 < self.attempts:
                    log.warning("Cloud Translation HTTP %s; retrying", err.code)
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation HTTP {err.code}: {detail}") from None
            except urllib.error.URLError as err:
                if attempt + 1 < self.attempts:
                    time.sleep(2**attempt)
                    continue
                raise RuntimeError(f"Cloud Translation unreachable: {err.reason}") from None
        raise RuntimeError("Cloud Translation: no attempts made")

    def _translate_unique(self, items: list[tuple[str, str, str]]) -> list[str]:
        out: list[str] = [""] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_, s, t) in enumerate(items):
            groups.setdefault((s, t), []).append(i)
        for (s, t), idx in groups.items():
            texts = [items[i][0] for i in idx]
            for chunk in google_chunks(texts):
                for j, translation in zip(
                    chunk, self._post([texts[k] for k in chunk], s, t), strict=True
                ):
                    out[idx[j]] = translation
        return out


def load_translator(
    settings: TranslatorSettings,
    *,
    backend: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    generator: Any = None,
    api: Any = None,
) -> Translator:
    """The translator the settings describe. For kind llm an already loaded Generator of the
    same model can be passed (no second copy is loaded); otherwise one is loaded on `backend`
    (an API model spec on the openai backend, with `api` = the config's backend.openai)."""
    if settings.kind == "llm":
        if generator is None:
            from polyculture.backends.generation.base import load_generator

            generator = load_generator(
                str(settings.model), backend=backend, batch_size=batch_size, openai=api
            )
        return LLMTranslator(generator, settings.max_new_tokens, seed=seed)
    if settings.kind == "nllb":
        return NLLBTranslator(str(settings.model), settings.max_new_tokens, batch_size=batch_size)
    return GoogleTranslator()
