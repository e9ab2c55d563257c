"""The spoken languages of Whisper, by code, in one table; `auto` asks the model to detect it.

Every Whisper checkpoint knows a subset of these (an `.en` model only English, a multilingual
one all of them but `yue`, which large-v3 added); each transcription engine says which it runs
(`languages()` in its module), and the jobs app refuses the others before charging anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

AUTO = "auto"

WHISPER_LANGUAGES: Mapping[str, str] = MappingProxyType({
    "en": "English", "zh": "Chinese", "de": "German", "es": "Spanish", "ru": "Russian", "ko": "Korean",
    "fr": "French", "ja": "Japanese", "pt": "Portuguese", "tr": "Turkish", "pl": "Polish", "ca": "Catalan",
    "nl": "Dutch", "ar": "Arabic", "sv": "Swedish", "it": "Italian", "id": "Indonesian", "hi": "Hindi",
    "fi": "Finnish", "vi": "Vietnamese", "he": "Hebrew", "uk": "Ukrainian", "el": "Greek", "ms": "Malay",
    "cs": "Czech", "ro": "Romanian", "da": "Danish", "hu": "Hungarian", "ta": "Tamil", "no": "Norwegian",
    "th": "Thai", "ur": "Urdu", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian", "la": "Latin",
    "mi": "Maori", "ml": "Malayalam", "cy": "Welsh", "sk": "Slovak", "te": "Telugu", "fa": "Persian",
    "lv": "Latvian", "bn": "Bengali", "sr": "Serbian", "az": "Azerbaijani", "sl": "Slovenian", "kn": "Kannada",
    "et": "Estonian", "mk": "Macedonian", "br": "Breton", "eu": "Basque", "is": "Icelandic", "hy": "Armenian",
    "ne": "Nepali", "mn": "Mongolian", "bs": "Bosnian", "kk": "Kazakh", "sq": "Albanian", "sw": "Swahili",
    "gl": "Galician", "mr": "Marathi", "pa": "Punjabi", "si": "Sinhala", "km": "Khmer", "sn": "Shona",
    "yo": "Yoruba", "so": "Somali", "af": "Afrikaans", "oc": "Occitan", "ka": "Georgian", "be": "Belarusian",
    "tg": "Tajik", "sd": "Sindhi", "gu": "Gujarati", "am": "Amharic", "yi": "Yiddish", "lo": "Lao",
    "uz": "Uzbek", "fo": "Faroese", "ht": "Haitian Creole", "ps": "Pashto", "tk": "Turkmen", "nn": "Nynorsk",
    "mt": "Maltese", "sa": "Sanskrit", "lb": "Luxembourgish", "my": "Myanmar", "bo": "Tibetan", "tl": "Tagalog",
    "mg": "Malagasy", "as": "Assamese", "tt": "Tatar", "haw": "Hawaiian", "ln": "Lingala", "ha": "Hausa",
    "ba": "Bashkir", "jw": "Javanese", "su": "Sundanese", "yue": "Cantonese",
})  # fmt: skip

# What a client may ask for: a code of the table, or `auto`.
LANGUAGE_CHOICES: tuple[str, ...] = (AUTO, *sorted(WHISPER_LANGUAGES))
# A multilingual checkpoint before large-v3 (tiny ... large-v2) knows every language but Cantonese.
MULTILINGUAL_V2 = frozenset(WHISPER_LANGUAGES) - {"yue"}


def with_auto(codes: Iterable[str]) -> frozenset[str]:
    """A model's languages plus `auto` (it can detect among them when it knows more than one)."""
    found = frozenset(codes)
    return found | {AUTO} if len(found) > 1 else found


def describe(codes: Iterable[str]) -> list[dict[str, str]]:
    """`[{code, name}]` in the table's order, `auto` first: what a client is shown."""
    wanted = set(codes)
    head = [{"code": AUTO, "name": "Detect the language"}] if AUTO in wanted else []
    return head + [{"code": c, "name": n} for c, n in WHISPER_LANGUAGES.items() if c in wanted]
