//! The shared resources every patient refers to: organizations, their locations,
//! practitioners and their roles, with fixed ids (`Organization/synth-org-1`, ...).

use serde_json::{Value, json};

use crate::fhir::{NPI, cc, cc_only, meta, reference, tho};
use crate::tables::{CLINICIANS, ORGS, TOWNS, loc_id, npi, org_id, pr_id, role_id};

fn address(street: &str, town: usize) -> Value {
    let (city, state, zip) = TOWNS[town % TOWNS.len()];
    let postal = format!("{zip}{:02}", 10 + town);
    json!({"use": "work", "line": [street], "city": city, "state": state, "postalCode": postal, "country": "US"})
}

fn phone(n: usize) -> Value {
    json!([{"system": "phone", "value": format!("(617) 555-01{:02}", 10 + n % 90), "use": "work"}])
}

fn put(resource: Value, rtype: &str, id: &str) -> Value {
    json!({"resource": resource, "request": {"method": "PUT", "url": format!("{rtype}/{id}")}})
}

pub(crate) fn bundle() -> Value {
    let mut entries = Vec::new();
    for (i, o) in ORGS.iter().enumerate() {
        let id = org_id(i);
        let org = json!({
            "resourceType": "Organization",
            "id": id,
            "meta": meta(),
            "identifier": [{"system": NPI, "value": npi(100 + i)}],
            "active": true,
            "type": [cc_only(tho!("organization-type"), "prov", "Healthcare Provider")],
            "name": o.name,
            "telecom": phone(i),
            "address": [address(o.street, o.town)],
        });
        entries.push(put(org, "Organization", &id));
    }
    for (i, o) in ORGS.iter().enumerate() {
        let id = loc_id(i);
        let loc = json!({
            "resourceType": "Location",
            "id": id,
            "meta": meta(),
            "status": "active",
            "name": o.name,
            "mode": "instance",
            "type": [cc(tho!("v3-RoleCode"), o.loc_code, o.loc_display)],
            "telecom": phone(i),
            "address": address(o.street, o.town),
            "managingOrganization": reference(&format!("Organization/{}", org_id(i))),
        });
        entries.push(put(loc, "Location", &id));
    }
    for (i, d) in CLINICIANS.iter().enumerate() {
        let id = pr_id(i);
        let pr = json!({
            "resourceType": "Practitioner",
            "id": id,
            "meta": meta(),
            "identifier": [{"system": NPI, "value": npi(i)}],
            "active": true,
            "name": [{"use": "official", "family": d.family, "given": [d.given], "prefix": ["Dr."]}],
            "telecom": phone(20 + i),
            "gender": if d.female { "female" } else { "male" },
            "qualification": [{"code": cc(tho!("v2-0360"), "MD", "Doctor of Medicine")}],
        });
        entries.push(put(pr, "Practitioner", &id));
    }
    for (i, d) in CLINICIANS.iter().enumerate() {
        let id = role_id(i);
        let role = json!({
            "resourceType": "PractitionerRole",
            "id": id,
            "meta": meta(),
            "active": true,
            "practitioner": reference(&format!("Practitioner/{}", pr_id(i))),
            "organization": reference(&format!("Organization/{}", org_id(d.org))),
            "code": [cc_only(tho!("practitioner-role"), "doctor", "Doctor")],
            "specialty": [cc(crate::fhir::SCT, d.specialty.code, d.specialty.display)],
            "location": [reference(&format!("Location/{}", loc_id(d.org)))],
        });
        entries.push(put(role, "PractitionerRole", &id));
    }
    json!({"resourceType": "Bundle", "meta": meta(), "type": "batch", "entry": entries})
}

/// `Dr. Given Family`.
pub(crate) fn clinician_name(i: usize) -> String {
    let d = &CLINICIANS[i % CLINICIANS.len()];
    format!("Dr. {} {}", d.given, d.family)
}
