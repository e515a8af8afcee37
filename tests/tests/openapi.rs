//! The admin API's OpenAPI 3.1 document (`GET /admin/v1/openapi.json`)
//! against the real answers of a real gateway: every endpoint is called in
//! the states it documents (success, bad parameter, not found, no token),
//! and every body is validated with JSON Schema 2020-12 against the schema
//! the document gives for that path, method, status and content type.
//! Schemas forbid undocumented members, so a field added to a response
//! without the document fails here.

use reqwest::Method;
use serde_json::{Value, json};
use session_gateway_e2e::admin::{ADMIN_TOKEN, AdminGateway};
use session_gateway_e2e::{Devkit, Gateway};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// Follows a local `$ref` of the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(pointer) => resolve(
            doc,
            doc.pointer(pointer.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
        ),
        None => value,
    }
}

/// One path segment as a JSON pointer in a URI fragment: `~` and `/`
/// escaped, then the braces of path templates percent-encoded.
fn escape(segment: &str) -> String {
    segment
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Calls the API and checks the answer against the document; the body.
async fn conforms(
    doc: &Value,
    gw: &Gateway,
    (method, template, path): (Method, &str, &str),
    body: Option<Value>,
    token: Option<&str>,
    status: u16,
) -> anyhow::Result<Value> {
    let mut request = gw
        .client()
        .request(method.clone(), gw.admin_url(&format!("/admin/v1{path}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &body {
        request = request.json(body);
    }
    let reply = request.send().await?;
    let got = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let text = reply.text().await?;
    anyhow::ensure!(
        got == status,
        "{method} {path}: {got}, expected {status}: {text}"
    );
    let operation = &doc["paths"][template][method.as_str().to_ascii_lowercase()];
    anyhow::ensure!(
        operation.is_object(),
        "{method} {template} is not documented"
    );
    let response = resolve(doc, &operation["responses"][status.to_string()]);
    anyhow::ensure!(
        response.is_object(),
        "{method} {template}: status {status} is not documented"
    );
    let media = &response["content"][&content_type];
    anyhow::ensure!(
        media.is_object(),
        "{method} {template} {status}: {content_type} is not documented"
    );
    if content_type == "text/csv" {
        return Ok(Value::String(text));
    }
    let instance: Value = serde_json::from_str(&text)?;
    // The document itself is the schema's root, so its `$ref`s resolve;
    // the keyword pointing at this answer's schema is added beside them.
    let pointer = format!(
        "#/paths/{}/{}/responses/{status}/content/{}/schema",
        escape(template),
        method.as_str().to_ascii_lowercase(),
        escape(&content_type)
    );
    let mut root = doc.clone();
    let schema_pointer = if operation["responses"][status.to_string()]["$ref"].is_string() {
        let shared = operation["responses"][status.to_string()]["$ref"]
            .as_str()
            .unwrap_or_default();
        format!("{shared}/content/{}/schema", escape(&content_type))
    } else {
        pointer
    };
    root["$ref"] = Value::String(schema_pointer);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    anyhow::ensure!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{instance}"
    );
    Ok(instance)
}

#[tokio::test]
async fn every_answer_of_the_admin_api_matches_its_openapi_document() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 2.into());
    let gw = AdminGateway::start(BIN, config).await?;
    let (alice, bob) = (kit.token("alice"), kit.token("bob"));
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &bob).await?.status, 200);
    assert_eq!(gw.get("/api/x", &kit.token("carol")).await?.status, 429);

    let doc: Value = gw
        .client()
        .get(gw.admin_url("/admin/v1/openapi.json"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(doc["openapi"], "3.1.0");
    let token = Some(ADMIN_TOKEN);
    let wrong = Some("wrong-token-0123456789");
    let list = conforms(
        &doc,
        &gw,
        (Method::GET, "/sessions", "/sessions?limit=1"),
        None,
        token,
        200,
    )
    .await?;
    assert!(
        list["next_cursor"].is_string(),
        "two sessions, pages of one"
    );
    let id = list["sessions"][0]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let session = format!("/sessions/{id}");
    for (method, template, path, status) in [
        (Method::GET, "/sessions/{id}", session.as_str(), 200),
        (Method::DELETE, "/sessions/{id}", &session, 200),
        (Method::GET, "/sessions/{id}", &session, 404),
        (
            Method::DELETE,
            "/subjects/{sub}/sessions",
            "/subjects/bob/sessions",
            200,
        ),
        (Method::GET, "/licenses", "/licenses", 200),
    ] {
        conforms(&doc, &gw, (method, template, path), None, token, status).await?;
    }
    conforms(
        &doc,
        &gw,
        (Method::GET, "/licenses", "/licenses"),
        None,
        None,
        401,
    )
    .await?;
    conforms(
        &doc,
        &gw,
        (Method::GET, "/licenses", "/licenses"),
        None,
        wrong,
        401,
    )
    .await?;

    let revocations = (Method::POST, "/revocations", "/revocations");
    let recorded = conforms(
        &doc,
        &gw,
        revocations.clone(),
        Some(json!({"subject": "carol"})),
        token,
        201,
    )
    .await?;
    conforms(
        &doc,
        &gw,
        revocations,
        Some(json!({"colour": "red"})),
        token,
        400,
    )
    .await?;
    let revocation: String = recorded["revocation"]["id"]
        .as_str()
        .unwrap_or_default()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let revocation = format!("/revocations/{revocation}");

    for (method, template, path, status) in [
        (Method::GET, "/revocations", "/revocations", 200),
        (
            Method::DELETE,
            "/revocations/{id}",
            revocation.as_str(),
            200,
        ),
        (Method::DELETE, "/revocations/{id}", &revocation, 404),
        (Method::GET, "/audit", "/audit?limit=5", 200),
        (Method::GET, "/audit", "/audit?after=nope", 400),
        (Method::GET, "/usage", "/usage?step=minute&format=csv", 200),
        (Method::GET, "/usage", "/usage?step=week", 400),
        (Method::GET, "/usage", "/usage?group=overdraft", 400),
        (
            Method::GET,
            "/usage/peaks",
            "/usage/peaks?step=hour&top=1",
            200,
        ),
        (Method::GET, "/usage/summary", "/usage/summary", 200),
        (
            Method::GET,
            "/usage/summary",
            "/usage/summary?month=1999-01",
            200,
        ),
        (Method::POST, "/reload", "/reload", 200),
        (Method::GET, "/openapi.json", "/openapi.json", 200),
    ] {
        conforms(&doc, &gw, (method, template, path), None, token, status).await?;
    }
    conforms(
        &doc,
        &gw,
        (Method::GET, "/openapi.json", "/openapi.json"),
        None,
        None,
        401,
    )
    .await?;
    let usage = conforms(
        &doc,
        &gw,
        (Method::GET, "/usage", "/usage?step=minute"),
        None,
        token,
        200,
    )
    .await?;
    assert!(!usage["intervals"].as_array().is_some_and(Vec::is_empty));
    let days = conforms(
        &doc,
        &gw,
        (Method::GET, "/usage", "/usage?step=day"),
        None,
        token,
        200,
    )
    .await?;
    assert!(
        days["intervals"]
            .as_array()
            .and_then(|a| a.last())
            .is_some_and(|d| d["subjects"] == 2)
    );
    Ok(())
}
