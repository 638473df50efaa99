use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::assert_outcome;

#[tokio::test(flavor = "multi_thread")]
async fn formats_and_media_types() {
    let s = TestServer::spawn().await;
    s.put("/Patient/n1", &json!({"resourceType":"Patient","id":"n1"})).await;
    let get = |path: &str, accept: Option<&str>| {
        let mut r = s.client.get(s.fhir(path));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    let r = get("/Patient/n1", Some("application/json")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let r = get("/Patient/n1", Some("application/fhir+xml")).await.unwrap();
    assert_eq!(r.status(), 406);
    assert_outcome(&json(r).await);
    let r = get("/Patient/n1?_format=xml", None).await.unwrap();
    assert_eq!(r.status(), 406);
    let r = get("/Patient/n1?_format=json", Some("application/xml")).await.unwrap();
    assert_eq!(r.status(), 200, "_format wins over Accept");
    let r = get("/Patient/n1?_format=application/fhir%2Bjson", None).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/Patient/n1?_pretty=true", None).await.unwrap();
    assert!(r.text().await.unwrap().contains("\n  \"id\": \"n1\""));
    let r = get("/Patient/n1", None).await.unwrap();
    assert!(!r.text().await.unwrap().contains('\n'));
    let r = get("/metadata", Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")).await.unwrap();
    assert_eq!(r.status(), 200, "browsers get JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_must_be_fhir_json() {
    let s = TestServer::spawn().await;
    let body = json!({"resourceType":"Patient"}).to_string();
    for ct in ["application/fhir+xml", "text/plain", "application/x-www-form-urlencoded"] {
        let r = s.client.post(s.fhir("/Patient")).header("content-type", ct).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct}");
        assert_outcome(&json(r).await);
    }
    let r = s.client.post(s.fhir("/Patient")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 415, "no content type");
    let r = s
        .client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("line 1"));
    let r = s.client.post(s.fhir("/Patient")).header("content-type", "application/fhir+json").send().await.unwrap();
    assert_eq!(r.status(), 400, "empty body");
    let r = s.post("/Patient", &json!([1, 2])).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn capability_statement_lists_what_works() {
    let s = TestServer::spawn().await;
    let r = s.get("/metadata").await;
    assert_eq!(r.status(), 200);
    let cs = json(r).await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["format"], json!(["application/fhir+json", "application/json"]));
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(interactions.contains(&"read") && interactions.contains(&"history-instance"));
    assert!(interactions.contains(&"search-type") && interactions.contains(&"patch"));
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["_id", "_lastUpdated", "name", "birthdate", "identifier", "organization", "_tag"] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    let obs = resources.iter().find(|r| r["type"] == "Observation").unwrap();
    let oparams: Vec<&str> =
        obs["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(oparams.contains(&"code-value-quantity") && oparams.contains(&"component-code-value-quantity"));
    assert_eq!(
        cs["rest"][0]["interaction"],
        json!([{"code":"transaction"},{"code":"batch"},{"code":"history-system"},{"code":"search-system"}])
    );
    // the statement is itself valid
    let r = s.post("/CapabilityStatement/$validate", &cs).await;
    let oo = json(r).await;
    assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{oo}");
}

#[tokio::test]
async fn a_binary_is_read_as_its_own_content_whole_or_by_range() {
    use base64::Engine;
    let ts = hale_test_support::TestServer::spawn().await;
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8];
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    let b = serde_json::json!({"resourceType": "Binary", "id": "img-1", "contentType": "image/png", "data": data});
    assert!(ts.put("/Binary/img-1", &b).await.status().is_success());
    let url = ts.fhir("/Binary/img-1");
    // no FHIR type asked for: the content itself
    for accept in [None, Some("*/*"), Some("image/png")] {
        let mut req = ts.client.get(&url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{accept:?}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
        assert!(r.headers().get("etag").is_some());
        assert_eq!(r.bytes().await.unwrap().to_vec(), png, "{accept:?}");
    }
    // FHIR asked for: the resource
    for (accept, format) in [(Some("application/fhir+json"), ""), (None, "?_format=json")] {
        let mut req = ts.client.get(format!("{url}{format}"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["resourceType"], "Binary");
        assert_eq!(v["data"], data);
    }
    // a byte range
    let r = ts.client.get(&url).header("range", "bytes=1-3").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1-3/16");
    assert_eq!(r.bytes().await.unwrap().to_vec(), b"PNG".to_vec());
    let r = ts.client.get(&url).header("range", "bytes=-4").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![5, 6, 7, 8]);
    let r = ts.client.get(&url).header("range", "bytes=100-200").send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */16");
    // large content (several chunks as it is decoded), whole and by ranges that start
    // and end inside base64 groups and across chunks
    let big: Vec<u8> = (0..300_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let r = ts
        .client
        .put(ts.fhir("/Binary/big-1"))
        .header("content-type", "application/pdf")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let big_url = ts.fhir("/Binary/big-1");
    let r = ts.client.get(&big_url).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "300001");
    assert_eq!(r.bytes().await.unwrap().to_vec(), big);
    for (a, b) in [(0usize, 0usize), (1, 2), (49_151, 49_153), (100_000, 250_001), (299_999, 300_000)] {
        let r = ts.client.get(&big_url).header("range", format!("bytes={a}-{b}")).send().await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], format!("bytes {a}-{b}/300001").as_str());
        assert_eq!(r.headers()["content-length"], (b - a + 1).to_string().as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), big[a..=b], "{a}-{b}");
    }
    // markup is never served to run in Hale's origin
    let html = serde_json::json!({"resourceType": "Binary", "id": "page-1", "contentType": "text/html",
        "data": base64::engine::general_purpose::STANDARD.encode("<script>alert(1)</script>")});
    assert!(ts.put("/Binary/page-1", &html).await.status().is_success());
    let r = ts.client.get(ts.fhir("/Binary/page-1")).send().await.unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    // another type with an image Accept is still refused
    let r = ts.client.get(ts.fhir("/Patient")).header("accept", "image/png").send().await.unwrap();
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn a_binary_is_created_and_replaced_from_its_own_content() {
    let ts = hale_test_support::TestServer::spawn_with(|c| c.limits.max_binary_bytes = 64 * 1024).await;
    assert!(
        ts.put("/Patient/bp1", &serde_json::json!({"resourceType": "Patient", "id": "bp1"}))
            .await
            .status()
            .is_success()
    );
    let pdf: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n".to_vec();
    // created from the bytes, governed by the patient X-Security-Context names
    let r = ts
        .client
        .post(ts.fhir("/Binary"))
        .header("content-type", "application/pdf")
        .header("x-security-context", "Patient/bp1")
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "Binary");
    assert_eq!(v["contentType"], "application/pdf");
    assert_eq!(v["securityContext"]["reference"], "Patient/bp1");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(location.contains(&format!("/Binary/{id}")), "{location}");
    let r = ts.client.get(ts.fhir(&format!("/Binary/{id}"))).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["content-disposition"], "inline");
    assert_eq!(r.bytes().await.unwrap().to_vec(), pdf);
    // indexed under its patient: the patient's compartment and the security context search find it
    let found = json(ts.get(&format!("/Binary?_id={id}")).await).await;
    assert_eq!(found["total"], 1, "{found}");

    // replaced by an update in its own media type: a new version, new content
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 9, 9];
    let r = ts
        .client
        .put(ts.fhir(&format!("/Binary/{id}")))
        .header("content-type", "image/png")
        .header("x-security-context", "Patient/bp1")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let r = ts.client.get(ts.fhir(&format!("/Binary/{id}"))).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);

    // bad input gets a clear error and changes nothing
    let before = json(ts.get("/Binary?_summary=count").await).await["total"].clone();
    let r = ts
        .client
        .post(ts.fhir("/Binary"))
        .header("content-type", "image/png")
        .header("x-security-context", "not a reference")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(oo["issue"][0]["expression"][0], "X-Security-Context", "{oo}");
    let r = ts
        .client
        .post(ts.fhir("/Binary"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let oo: serde_json::Value = r.json().await.unwrap();
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("65536"), "{oo}");
    // another type is still only FHIR
    let r = ts.client.post(ts.fhir("/Patient")).header("content-type", "image/png").body(png).send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(json(ts.get("/Binary?_summary=count").await).await["total"], before);
}

/// Content sent in its own media type is kept apart from the Binary's JSON, in parts of
/// 512 KiB: a native read and a range read take only the parts they need, and every
/// FHIR read (read, vread, history, search) shows the Binary whole, its content as
/// `data`; a patch and an update keep or replace it, and each version keeps its own.
#[tokio::test]
async fn a_binarys_content_is_kept_apart_and_read_a_part_at_a_time() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ts = hale_test_support::TestServer::spawn().await;
    assert!(
        ts.put("/Patient/kp1", &serde_json::json!({"resourceType": "Patient", "id": "kp1"}))
            .await
            .status()
            .is_success()
    );
    // three parts: two whole, the last short
    let big: Vec<u8> = (0..1_200_007u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8).collect();
    let url = ts.fhir("/Binary/scan-1");
    let r = ts
        .client
        .put(&url)
        .header("content-type", "application/dicom")
        .header("x-security-context", "Patient/kp1")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"], b64(&big), "the answer to the write is the Binary whole");
    let r = ts.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dicom");
    assert_eq!(r.headers()["content-length"], "1200007");
    assert_eq!(r.bytes().await.unwrap().to_vec(), big);
    let part = 512 * 1024;
    for (a, b) in
        [(0, 0), (part - 3, part + 2), (part, part), (2 * part - 1, 2 * part), (5, 1_100_000), (1_200_006, 1_200_006)]
    {
        let r = ts.client.get(&url).header("range", format!("bytes={a}-{b}")).send().await.unwrap();
        assert_eq!(r.status(), 206, "{a}-{b}");
        assert_eq!(r.headers()["content-range"], format!("bytes {a}-{b}/1200007").as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), big[a..=b], "{a}-{b}");
    }
    let r = ts.client.get(&url).header("range", "bytes=1200007-").send().await.unwrap();
    assert_eq!(r.status(), 416);
    // every FHIR read shows it whole
    let fhir = |path: &str| {
        let req = ts.client.get(ts.fhir(path)).header("accept", "application/fhir+json");
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let read = fhir("/Binary/scan-1").await;
    assert_eq!(read["data"], b64(&big));
    assert_eq!(read["contentType"], "application/dicom");
    assert_eq!(read["securityContext"]["reference"], "Patient/kp1");
    assert_eq!(fhir("/Binary/scan-1/_history/1").await["data"], b64(&big));
    assert_eq!(fhir("/Binary?_id=scan-1").await["entry"][0]["resource"]["data"], b64(&big));
    // a patch keeps the content (now in the JSON)
    let patch = serde_json::json!([{"op": "replace", "path": "/contentType", "value": "application/octet-stream"}]);
    let r = ts
        .client
        .patch(&url)
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = ts.client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().to_vec(), big);
    // an update in its own media type: new content, the old versions keep theirs
    let small = b"%PDF-1.4 small".to_vec();
    let r = ts.client.put(&url).header("content-type", "application/pdf").body(small.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ts.client.get(&url).send().await.unwrap().bytes().await.unwrap().to_vec(), small);
    let history = fhir("/Binary/scan-1/_history").await;
    let datas: Vec<&str> =
        history["entry"].as_array().unwrap().iter().map(|e| e["resource"]["data"].as_str().unwrap()).collect();
    assert_eq!(datas, [b64(&small), b64(&big), b64(&big)]);
    assert_eq!(fhir("/Binary/scan-1/_history/1").await["data"], b64(&big));
    // deleted: gone, in its own media type too
    assert!(ts.client.delete(&url).send().await.unwrap().status().is_success());
    assert_eq!(ts.client.get(&url).send().await.unwrap().status(), 410);
    assert_eq!(fhir("/Binary/scan-1/_history/1").await["data"], b64(&big));
}
