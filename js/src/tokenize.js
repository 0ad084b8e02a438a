// Item text -> token id tensors for the text-encoder graph, with Hugging Face's
// tokenizers.js reading the bundle's tokenizer.json (the twin of
// edgerec.runtime.tokenize). As in Python: texts are truncated to the manifest's
// text_max_length tokens (special tokens included, the text's own tokens cut from the
// right) and a batch is padded to its longest text with the tokenizer's pad id.

import { Tokenizer } from "@huggingface/tokenizers";
import { fail } from "./bundle.js";

// A text longer than this many characters per allowed token cannot contribute more
// tokens; cutting it first bounds the tokenizer's work (edgerec.runtime.tokenize).
const CHARS_PER_TOKEN_BOUND = 32;

export class TextTokenizer {
  /**
   * @param {string} json the contents of tokenizer.json
   * @param {number} maxLength tokens per text, special tokens included
   */
  constructor(json, maxLength, name = "tokenizer.json") {
    let spec;
    try {
      spec = JSON.parse(json);
      this.tok = new Tokenizer(spec, { unk_token: spec.model?.unk_token });
    } catch (e) {
      throw fail(name, `not a valid tokenizers file (${e.message})`);
    }
    this.vocab = this.tok.get_vocab(true);
    let padId = spec.padding?.pad_id ?? null;
    if (padId === null) {
      padId = ["[PAD]", "<pad>", "<PAD>"].map((t) => this.vocab.get(t)).find((x) => x !== undefined) ?? 0;
    }
    this.padId = padId;
    this.unkId = this.vocab.get(spec.model?.unk_token) ?? 0;
    // tokens the post-processor adds around one text ([CLS] ... [SEP] for BERT)
    this.nSpecial = this.tok.post_processor ? this.tok.post_processor([], null, true).tokens.length : 0;
    this.maxLength = maxLength;
    this.maxChars = maxLength * CHARS_PER_TOKEN_BOUND;
  }

  /** ids and token type ids of one text, truncated to maxLength. */
  encodeOne(text) {
    if (text.length > this.maxChars) text = Array.from(text).slice(0, this.maxChars).join("");
    const tokens = this.tok.tokenize(text, { add_special_tokens: false });
    const kept = tokens.slice(0, Math.max(0, this.maxLength - this.nSpecial));
    const { tokens: all, token_type_ids } = this.tok.post_processor
      ? this.tok.post_processor(kept, null, true)
      : { tokens: kept, token_type_ids: null };
    const out = all.slice(0, this.maxLength);
    const ids = out.map((t) => this.vocab.get(t) ?? this.unkId);
    return { ids, types: token_type_ids ? token_type_ids.slice(0, out.length) : ids.map(() => 0) };
  }

  /**
   * input_ids, attention_mask and token_type_ids of `texts` as int64 [batch, tokens].
   * @param {string[]} texts
   */
  encode(texts) {
    const enc = texts.map((t) => this.encodeOne(t));
    const longest = Math.max(0, ...enc.map((e) => e.ids.length));
    const width = Math.max(1, longest); // all empty, no special tokens: one column of zeros
    const n = texts.length;
    const ids = new BigInt64Array(n * width).fill(longest ? BigInt(this.padId) : 0n);
    const mask = new BigInt64Array(n * width);
    const types = new BigInt64Array(n * width);
    enc.forEach((e, i) => {
      e.ids.forEach((id, j) => {
        ids[i * width + j] = BigInt(id);
        mask[i * width + j] = 1n;
        types[i * width + j] = BigInt(e.types[j]);
      });
    });
    return { ids, mask, types, shape: [n, width] };
  }
}
