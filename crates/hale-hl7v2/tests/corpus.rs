//! Every message of the shared HL7 v2 corpus (the v2-to-FHIR guide's and CDC's trusted
//! intermediary test messages) parses, its header reads, every OBX is found, and its
//! acknowledgement parses back; bytes mutated from the corpus never panic the parser.

use hale_hl7v2::{AckCode, Message, ack};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let Some(dir) = hale_test_support::shared_data("hl7v2") else { return Vec::new() };
    let mut files = Vec::new();
    for sub in ["v2-to-fhir", "cdc-trusted-intermediary"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "hl7") {
                files.push((p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_message_parses_and_is_acknowledged() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    assert!(files.len() >= 139, "{} messages", files.len());
    let (mut obx, mut refused) = (0, Vec::new());
    for (name, bytes) in &files {
        let m = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                refused.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (code, _, _) = m.message_type();
        assert!(!code.is_empty() && !m.control_id().is_empty(), "{name}");
        obx += m.all("OBX").count();
        let a = ack(&m, AckCode::Aa, "ACK1", "20261207000000", &[]);
        let back = Message::parse(a.as_bytes()).unwrap_or_else(|e| panic!("{name}: the ACK does not parse: {e}\n{a}"));
        assert_eq!(back.get("MSA-2"), m.get("MSH-10"), "{name}");
    }
    // refused, with the reason and where: the corpus's deliberately broken messages, an
    // annotated copy for humans, and one whose segment is broken across two lines
    let expected = [
        "TN_001_TN_ORU_R01_LRI_annotated_for_transformation.hl7",
        "TX_001_TX_OML_O21.hl7",
        "Test_Message_empty.hl7",
        "Test_Message_msh_present_but_missing_all_fields.hl7",
        "Test_Message_msh_present_but_missing_msh-10.hl7",
        "Test_Message_msh_present_but_missing_msh-2.hl7",
        "Test_Message_msh_present_but_missing_msh-9.hl7",
    ];
    let names: Vec<&str> = refused.iter().map(|r| r.split(':').next().unwrap_or("")).collect();
    assert_eq!(names, expected, "{refused:#?}");
    assert!(refused.iter().all(|r| r.contains("(at ")), "{refused:#?}");
    assert!(obx > 500, "{obx} OBX segments");
}

/// A small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_messages_never_panic_the_parser() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    let iterations: usize = std::env::var("HALE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut rng = Rng(std::env::var("HALE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1e57));
    let interesting =
        [b'|', b'^', b'~', b'\\', b'&', b'\r', b'\n', 0x0b, 0x1c, 0xC3, 0xFF, b'X', b'M', b'S', b'H', b'.', b'+', b'-'];
    for _ in 0..iterations {
        let (_, base) = &files[rng.next() as usize % files.len()];
        let mut b = base.clone();
        for _ in 0..(1 + rng.next() % 8) {
            if b.is_empty() {
                break;
            }
            let at = rng.next() as usize % b.len();
            match rng.next() % 4 {
                0 => b[at] = interesting[rng.next() as usize % interesting.len()],
                1 => {
                    b.remove(at);
                }
                2 => b.insert(at, interesting[rng.next() as usize % interesting.len()]),
                _ => b.truncate(at),
            }
        }
        if let Ok(m) = Message::parse(&b) {
            // reading any address of a parsed message never panics either
            for s in &m.segments {
                for f in 0..=s.len() + 1 {
                    let _ = m.value(s, &format!("{f}.2.2"));
                    let _ = m.repetitions(s, f);
                }
            }
            let _ = ack(&m, AckCode::Ae, "x", "2026", &[]);
            let _ = hale_hl7v2::timestamp(&m.get("MSH-7"));
            // nor do the mappings, of a result or of an admission (as whatever type)
            let _ = hale_hl7v2::oru::map_oru(&m);
            let _ = hale_hl7v2::adt::map_adt(&m);
            let _ = hale_hl7v2::ack_wanted(&m, hale_hl7v2::mode_code(&m, AckCode::Aa));
        }
    }
}

#[test]
fn every_obx_of_every_corpus_result_is_accounted_for() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    let (mut messages, mut mapped, mut refused) = (0, 0, 0);
    for (name, bytes) in &files {
        let Ok(m) = Message::parse(bytes) else { continue };
        if m.message_type().0 != "ORU" {
            continue;
        }
        messages += 1;
        let Ok(out) = hale_hl7v2::oru::map_oru(&m) else { continue };
        // every OBX is an Observation or named with its reason
        assert_eq!(out.obx.len(), m.all("OBX").count(), "{name}");
        for o in &out.obx {
            match o {
                hale_hl7v2::oru::ObxOutcome::Mapped(_) => mapped += 1,
                hale_hl7v2::oru::ObxOutcome::Refused(e) => {
                    assert!(e.location.starts_with("OBX^") && !e.text.is_empty(), "{name}: {e:?}");
                    refused += 1;
                }
            }
        }
        for e in out.bundle["entry"].as_array().unwrap() {
            let issues = hale_fhir::validate::validate_resource(&e["resource"]);
            let errors: Vec<_> = issues.iter().filter(|i| i.is_error()).collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{}", e["resource"]);
        }
    }
    assert!(messages > 50 && mapped > 500, "{messages} ORU messages, {mapped} OBX mapped, {refused} refused");
    println!("{messages} ORU^R01 messages: {mapped} OBX mapped, {refused} named in an ERR");
}

#[test]
fn every_corpus_admission_maps_or_says_why() {
    let mut n = 0;
    for (name, bytes) in corpus() {
        let Ok(m) = Message::parse(&bytes) else { continue };
        let (kind, trigger, _) = m.message_type();
        if kind != "ADT" {
            continue;
        }
        n += 1;
        match hale_hl7v2::adt::map_adt(&m) {
            Ok(a) => {
                assert_eq!(a.event, trigger, "{name}");
                assert!(!a.patient_key.1.is_empty(), "{name}");
                for w in &a.warnings {
                    assert!(!w.location.is_empty() && !w.text.is_empty(), "{name}: {w:?}");
                }
            }
            Err(errors) => panic!("{name}: {errors:?}"),
        }
    }
    if n > 0 {
        assert!(n >= 3, "the corpus's admissions: {n}");
    }
}
