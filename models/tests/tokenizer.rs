//! The tokenizer wrapper on hand-written tokenizer.json files whose ids are worked out by hand,
//! and byte-level BPE training. Agreement with transformers on real tokenizers is tested in
//! `runtime/tests/hf_reference.rs` (it needs Python).

use bastion_models::tokenizer::{train_byte_level_bpe, TextTokenizer, END_OF_TEXT};
use bastion_models::ModelError;
use std::path::PathBuf;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-tokenizer-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A GPT-2-shaped tokenizer.json (byte-level pre-tokenizer, post-processor and decoder) with
/// a 14-entry vocabulary and five merges. `Ġ` is the byte-level symbol for a space.
fn tiny_json(post_processor: serde_json::Value) -> String {
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": 13, "content": END_OF_TEXT, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8,
                      "ll": 9, "hell": 10, "hello": 11, "Ġw": 12, END_OF_TEXT: 13},
            "merges": ["h e", "l l", "he ll", "hell o", "Ġ w"]
        }
    })
    .to_string()
}

fn byte_level_post_processor() -> serde_json::Value {
    serde_json::json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
}

#[test]
fn encodes_with_merges_in_rank_order_and_adds_nothing() {
    let tok = TextTokenizer::from_bytes(tiny_json(byte_level_post_processor()).as_bytes()).unwrap();
    // "hello" merges fully; " world" splits at the regex into "Ġworld": Ġw, o, r, l, d.
    assert_eq!(tok.encode("hello world").unwrap(), [11, 12, 3, 6, 2, 7]);
    // "hell" + "o" needs "he ll" before "hell o"; "ll" alone stays "ll".
    assert_eq!(tok.encode("ll he").unwrap(), [9, 4, 8]);
    // The special token is matched as one piece, never split into bytes.
    assert_eq!(
        tok.encode(&format!("hello{END_OF_TEXT}")).unwrap(),
        [11, 13]
    );
    assert_eq!(tok.eos_id(), Some(13));
    assert_eq!(tok.vocab_size(), 14);
    assert_eq!(tok.decode(&[11, 12, 3, 6, 2, 7]).unwrap(), "hello world");
    assert_eq!(
        tok.decode(&[11, 13]).unwrap(),
        format!("hello{END_OF_TEXT}")
    );
}

#[test]
fn post_processor_special_tokens_are_added() {
    // A template post-processor that prepends <|endoftext|> to every sequence.
    let template = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": END_OF_TEXT, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {END_OF_TEXT: {"id": END_OF_TEXT, "ids": [13], "tokens": [END_OF_TEXT]}}
    });
    let tok = TextTokenizer::from_bytes(tiny_json(template).as_bytes()).unwrap();
    assert_eq!(tok.encode("hello").unwrap(), [13, 11]);
}

#[test]
fn from_file_keeps_the_bytes_and_names_bad_files() {
    let dir = scratch("files");
    let json = tiny_json(byte_level_post_processor());
    let file = dir.join("tokenizer.json");
    std::fs::write(&file, &json).unwrap();
    let tok = TextTokenizer::from_file(&file).unwrap();
    assert_eq!(tok.to_bytes(), json.as_bytes());
    let copy = dir.join("copy.json");
    tok.save(&copy).unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), json.as_bytes());

    match TextTokenizer::from_file(&dir.join("absent.json")).unwrap_err() {
        ModelError::Io { path, .. } => assert_eq!(path, dir.join("absent.json")),
        other => panic!("expected Io, got {other:?}"),
    }
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    let err = TextTokenizer::from_file(&bad).unwrap_err();
    assert!(
        matches!(&err, ModelError::Tokenizer { path: Some(p), .. } if p == &bad),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.json"), "{err}");

    let mut padded: serde_json::Value = serde_json::from_str(&json).unwrap();
    padded["truncation"] = serde_json::json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
    let err = TextTokenizer::from_bytes(padded.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("truncation"), "{err}");
}

#[test]
fn decode_refuses_ids_outside_the_vocabulary() {
    let tok = TextTokenizer::from_bytes(tiny_json(byte_level_post_processor()).as_bytes()).unwrap();
    for id in [14, -1, i64::from(u32::MAX) + 1] {
        let err = tok.decode(&[0, id]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("id {id} at position 1")),
            "{err}"
        );
    }
}

fn corpus() -> Vec<String> {
    (0..200)
        .map(|i| {
            format!(
                "Record {i}: the patient was seen on day {} and the tissue sample was \
                 benign. Follow-up in {} weeks; no further action.\n",
                i % 31,
                i % 7
            )
        })
        .collect()
}

#[test]
fn trained_tokenizer_round_trips_any_text_and_is_deterministic() {
    let dir = scratch("train");
    let out = dir.join("tokenizer.json");
    let tok = train_byte_level_bpe(&corpus(), 400, &out).unwrap();
    // At most the requested size: merges stop when no pair is seen twice.
    assert!(
        (300..=400).contains(&tok.vocab_size()),
        "{}",
        tok.vocab_size()
    );
    assert_eq!(tok.eos_id(), Some(0));
    assert_eq!(std::fs::read(&out).unwrap(), tok.to_bytes());
    // Frequent words became single tokens.
    assert_eq!(tok.encode(" patient").unwrap().len(), 1);
    // Byte-level: text never seen (other scripts, emoji, control bytes) still round-trips.
    for text in [
        "the tissue sample",
        "  multiple   spaces\tand\ttabs\n\n",
        "Ünïcödé — 東京 🎉🧬 ∑x²",
        "",
        "\u{0}\u{7f}",
    ] {
        let ids = tok.encode(text).unwrap();
        assert!(ids
            .iter()
            .all(|&id| (0..tok.vocab_size() as i64).contains(&id)));
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
    let again = train_byte_level_bpe(&corpus(), 400, &dir.join("again.json")).unwrap();
    assert_eq!(again.to_bytes(), tok.to_bytes());
    assert_eq!(
        TextTokenizer::from_file(&out)
            .unwrap()
            .encode("day 12")
            .unwrap(),
        tok.encode("day 12").unwrap()
    );
}

#[test]
fn training_refuses_a_vocabulary_without_room_for_the_bytes() {
    let dir = scratch("small");
    let err = train_byte_level_bpe(&corpus(), 200, &dir.join("t.json")).unwrap_err();
    assert!(
        err.to_string().contains("vocab_size 200 is below 257"),
        "{err}"
    );
    let err = train_byte_level_bpe(&[String::new()], 300, &dir.join("t.json")).unwrap_err();
    assert!(err.to_string().contains("no text"), "{err}");
}
