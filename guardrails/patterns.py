"""Regular expressions for attacks that have a fixed shape: published jailbreak templates and instructions planted
in documents for the model to find (indirect prompt injection).

Each rule is a phrase, not a word: "ignore" or "developer" alone are everyday English (the NotInject set is full of
them); "ignore all previous instructions" and "Developer Mode enabled" are not. Patterns read the output of
`normalize.for_detection` and match case-insensitively.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PatternRule:
    """A named regular expression."""

    name: str
    pattern: re.Pattern[str]


def _rules(table: dict[str, str]) -> tuple[PatternRule, ...]:
    return tuple(PatternRule(name, re.compile(rx, re.IGNORECASE)) for name, rx in table.items())


# "any previous and following instructions" (PromptInject's goal hijack) as well as "all previous instructions"
_PREVIOUS = (
    r"(?:all |any |the |your |of |my )*(?:previous|prior|preceding|above|earlier|initial|original|system|following"
    r"|before)(?:\s+(?:and|or|&)\s+\w+)?"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|guidelines|directives|programming|constraints|restrictions|commands?|orders?"
    r"|tasks?|text|context|requests?)"
)

#: Known jailbreak templates (DAN and its family, developer mode, AIM, persona swaps, placeholder-style prompts).
JAILBREAK_TEMPLATES = _rules(
    {
        "ignore_previous_instructions": rf"\b(?:ignore|disregard|forget|override|bypass)\s+{_PREVIOUS}\s+{_RULES}",
        "do_anything_now": r"\bdo anything now\b|\b(?:as|act as|you are|pretend to be|named|called) (?:a )?DAN\b"
        r"|\bDAN mode\b|\bDAN:",
        "developer_mode": r"\b(?:chatgpt|gpt|ai|assistant|you)\b.{0,40}\b(?:developer|jailbreak|DAN|unrestricted|"
        r"unfiltered) mode\b",
        "jailbroken_persona": r"\[?🔓\s*JAILBREAK\]?|\bjailbroken\b|\bjailbreak(?:ed)? (?:version|prompt|ai|chatbot)\b",
        "no_restrictions_persona": r"\b(?:without|free from|free of|no longer (?:bound|restricted) by|not bound by|"
        r"doesn't have|does not have|has no|have no|ignores?|disregards?)\s+(?:any\s+)?(?:\w+\s+){0,2}"
        r"(?:ethical|moral|content|safety|openai(?:'s)?)\s+(?:\w+\s+)?(?:guidelines|restrictions|filters|policies|"
        r"constraints|considerations|boundaries|rules)",
        "disregards_ethics": r"\bdisregards? (?:all |any )?(?:ethics|morals|morality|legality)\b",
        "stay_in_character": r"\b(?:stay|remain|keep) in character\b.{0,200}\b(?:never|don't|do not) (?:break|refuse)"
        r"|\bnever (?:refuses?|breaks? character)\b",
        "aim_machiavellian": r"\balways intelligent and machiavellian\b|\bAIM\b.{0,80}\bmachiavellian\b",
        "answer_as_both": r"\b(?:two|2) (?:different |separate )?(?:responses|answers|paragraphs)\b.{0,200}"
        r"\b(?:normal|classic|standard)\b.{0,200}\b(?:jailbreak|developer mode|DAN|unfiltered)\b",
        "token_penalty_game": r"\byou (?:have|will (?:start|begin) with) \d+ tokens\b|\btokens? will be deducted\b",
        # "[Question]: …" labels a field (HelloBench's writing prompts); a placeholder is not followed by a colon
        "prompt_placeholder": r"\[(?:insert |your |put your )?(?:prompt|question|request)(?: here)?\](?!\s*:)"
        r"|<(?:your )?prompt>|\{(?:insert )?prompt\}",
        "villain_monologue": r"\bDr\.? Al\b.{0,120}\b(?:diabolical|plan)\b",
        "evil_confidant": r"\bevil (?:trusted )?confidant\b",
        "opposite_persona": r"\b(?:opposite|anti)[- ]?(?:mode|gpt|dan)\b|\bBetterDAN\b|\bAntiGPT\b",
    }
)

#: Instructions addressed to an AI model inside a retrieved document.
RETRIEVAL_INJECTIONS = _rules(
    {
        "ignore_previous_instructions": JAILBREAK_TEMPLATES[0].pattern.pattern,
        "addressed_to_the_model": r"\b(?:note|attention|message|instructions?) (?:to|for) (?:the |any )?(?:ai|llm|"
        r"language model|assistant|chatbot|model)\b|\b(?:if|when) you are an? (?:ai|llm|language model|assistant)\b"
        r"|\b(?:ai|llm) (?:assistants?|models?) (?:reading|processing|summari[sz]ing) this\b",
        "role_markers": r"(?:^|\s)(?:system|assistant)\s*:\s|<\|im_start\|>|<\|(?:system|assistant)\|>|\[/?INST\]"
        r"|<</?SYS>>",
        "new_instructions": r"\bnew (?:instructions|task|objective|system prompt)\s*:|\byour (?:new|real|actual) "
        r"(?:instructions|task|goal) (?:is|are)\b",
        "conceal_from_user": r"\b(?:do not|don't|never) (?:tell|inform|mention (?:this )?to|reveal (?:this )?to) "
        r"the user\b|\bwithout (?:telling|informing) the user\b",
        "exfiltrate": r"\b(?:send|post|forward|include|append)\b.{0,60}\b(?:conversation|chat history|system prompt|"
        r"api key|password|credentials)\b.{0,60}\b(?:to|at)\s+(?:https?://|www\.|\S+@\S+)",
        "reveal_system_prompt": r"\b(?:reveal|print|output|repeat|show)\s+(?:\w+\s+){0,2}(?:system prompt|"
        r"hidden instructions|initial instructions)\b",
    }
)


def first_match(rules: tuple[PatternRule, ...], text: str) -> PatternRule | None:
    """The first rule whose pattern occurs in `text`, or None."""
    return next((rule for rule in rules if rule.pattern.search(text)), None)
