"""Text prompts ("person, bicycle") as concepts: SAM 3's prompt, and SAM 2's text prompt for the detector."""

from __future__ import annotations

from vocab.errors import bad_request

MAX_CONCEPT_CHARS = 100


def prompt_parts(prompt: str | list[str] | None) -> list[str]:
    return [prompt] if isinstance(prompt, str) else list(prompt or [])


def is_blank(prompt: str | list[str] | None) -> bool:
    """No concept at all: absent, empty, or only commas and spaces."""
    return not any(part.replace(",", " ").strip() for part in prompt_parts(prompt))


def parse_concepts(prompt: str | list[str], max_concepts: int) -> list[str]:
    """``"person, bicycle"`` or a list → trimmed, de-duplicated (case-insensitive, first spelling kept) concepts.

    Empty → ``["person"]``; more than ``max_concepts`` or an over-long concept → 400.
    """
    parts = [p for item in prompt_parts(prompt) for p in item.split(",")]
    concepts: list[str] = []
    seen: set[str] = set()
    for part in parts:
        concept = " ".join(part.split())
        if not concept or concept.lower() in seen:
            continue
        if len(concept) > MAX_CONCEPT_CHARS:
            raise bad_request(f"options.text_prompt: a concept is longer than {MAX_CONCEPT_CHARS} characters")
        seen.add(concept.lower())
        concepts.append(concept)
    if len(concepts) > max_concepts:
        raise bad_request(f"options.text_prompt: {len(concepts)} concepts; at most {max_concepts} are allowed")
    return concepts or ["person"]


def text_concepts(prompt: str | list[str] | None, max_concepts: int) -> list[str]:
    """The concepts of a text prompt that may be absent (SAM 2): none for an absent or blank prompt."""
    return [] if is_blank(prompt) else parse_concepts(prompt, max_concepts)
