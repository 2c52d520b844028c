"""Tiny random-config checkpoints for memory-model tests, made offline: a byte-level BPE tokenizer trained in
milliseconds on made-up words, and a Mamba-2 (or Mamba-1, to be refused) saved with `save_pretrained`."""

import random
from pathlib import Path

WORDS_SEED = 7


def words(n: int = 1500, seed: int = WORDS_SEED) -> list[str]:
    """Made-up words (syllable strings): a vocabulary the tokenizer learns whole, so text stays few tokens."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "zo", "pa", "qu", "xi", "del", "tor", "ban"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(n)})


def text(n_words: int, seed: int = 0) -> str:
    """Sentences of made-up words, with punctuation and numbers, about 5 characters per word."""
    rng = random.Random(seed)
    vocab = words()
    out = []
    for i in range(0, n_words, 12):
        sentence = " ".join(rng.choice(vocab) for _ in range(min(12, n_words - i)))
        out.append(sentence.capitalize() + rng.choice([".", ",", "!", f" {rng.randint(0, 999)}."]))
    return " ".join(out)


def save_tokenizer(directory: Path, vocab_size: int = 1024) -> int:
    """Train and save a byte-level BPE tokenizer (GPT-2 style, `<|endoftext|>` as eos); return its eos id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text(60, seed=s) for s in range(300)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(directory)
    return int(fast.eos_token_id)


def save_mamba2(
    directory: Path, *, seed: int = 0, hidden: int = 16, layers: int = 2, head_dim: int = 16, d_state: int = 16
) -> Path:
    """A random Mamba-2 (expand 2, one group, SSD chunk 32) with its tokenizer, saved to `directory`."""
    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    eos = save_tokenizer(directory)
    config = Mamba2Config(
        vocab_size=1024,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_heads=2 * hidden // head_dim,
        head_dim=head_dim,
        state_size=d_state,
        n_groups=1,
        expand=2,
        conv_kernel=4,
        chunk_size=32,  # the pure-PyTorch scan costs O(chunk_size) per token: small is fast on CPU
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    Mamba2ForCausalLM(config).save_pretrained(directory)
    return directory


def save_mamba1(directory: Path) -> Path:
    """A random Mamba-1 checkpoint, which the memory model must refuse."""
    from transformers import MambaConfig, MambaForCausalLM

    save_tokenizer(directory)
    MambaForCausalLM(MambaConfig(vocab_size=1024, hidden_size=16, num_hidden_layers=1, state_size=4)).save_pretrained(
        directory
    )
    return directory
