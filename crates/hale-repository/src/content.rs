//! Binary content kept apart from its resource's JSON ([`hale_store::Content`]): what
//! the gate reads is always the whole resource. [`Whole`] stands before the store and
//! puts a Binary's content back into its JSON as `data` (base64) wherever a stored
//! version leaves the store (a read, a search or history page, an `_include`, a copy of
//! the store); only the content's own read ([`crate::Repository::read_content`]) takes
//! it a part at a time. A write that sent content apart is answered without it (the
//! version as written), and [`crate::Repository::whole`] puts it in when the resource is
//! to be shown.

use std::sync::Arc;

use async_trait::async_trait;
use hale_fhir::{ResourceId, ResourceType, VersionId};
use hale_search::parse::SearchRequest;
use hale_store::{
    AccountKey, AccountRow, AuditQuery, AuditRow, AuditWrite, AuthRecord, ChainLink, ChainedEntry, Content,
    CreateOutcome, Criteria, Error, EverythingQuery, HistoryPage, HistoryQuery, HistoryScope, IndexRows, NewVersion,
    Result, SearchPage, Store, StoredResource, TxOp, TxOutcome, UpdateOutcome,
};

/// The most body text a page of [`Store::versions_after`] holds once its Binaries are
/// whole, unless its first version alone is more.
const PAGE_BYTES: usize = 64 * 1024 * 1024;

/// The store, with every Binary version it answers whole.
pub(crate) struct Whole(pub(crate) Arc<dyn Store>);

/// Puts the content of Binary version `s` kept apart back into its JSON, as `data`.
pub(crate) async fn whole(store: &dyn Store, s: &mut StoredResource) -> Result<()> {
    if s.resource_type.as_str() != "Binary" || s.body.is_none() {
        return Ok(());
    }
    let Some(len) = store.content_len(&s.id, s.version).await? else {
        return Ok(());
    };
    let missing = || Error::Backend(format!("Binary/{} version {}: its content has a gap", s.id, s.version));
    let mut data = String::with_capacity((len.div_ceil(3) * 4) as usize + 16);
    {
        use std::io::Write;
        let mut enc =
            base64::write::EncoderStringWriter::from_consumer(&mut data, &base64::engine::general_purpose::STANDARD);
        let mut at = 0u64;
        while at < len {
            let (from, bytes) = store.content_part(&s.id, s.version, at).await?.ok_or_else(missing)?;
            if from != at || bytes.is_empty() {
                return Err(missing());
            }
            enc.write_all(&bytes).map_err(|e| Error::Backend(e.to_string()))?;
            at += bytes.len() as u64;
        }
        enc.into_inner();
    }
    if let Some(body) = &mut s.body {
        // the stored JSON is an object without `data`, as the store wrote it
        let Some(open) = body.trim_end().strip_suffix('}').map(str::len) else {
            return Err(Error::Backend(format!("Binary/{}: its stored JSON is not an object", s.id)));
        };
        body.truncate(open);
        body.reserve(data.len() + 10);
        body.push_str(",\"data\":\"");
        body.push_str(&data);
        body.push_str("\"}");
    }
    Ok(())
}

/// [`whole`] of every version of a page, its includes too.
async fn whole_page(store: &dyn Store, mut page: SearchPage) -> Result<SearchPage> {
    for s in page.entries.iter_mut().chain(page.included.iter_mut()) {
        whole(store, s).await?;
    }
    Ok(page)
}

/// A Binary version's content back apart from its JSON, where [`whole`] put it (or
/// where a Binary stored whole has it too: `data` its JSON's last member): the JSON
/// without it, and the content decoded into a file. `None` when the version is not such
/// a Binary (it is then copied as it is).
pub(crate) fn apart(s: &StoredResource) -> Result<Option<(String, Content)>> {
    use base64::Engine;
    use std::io::Write;
    const MARK: &str = ",\"data\":\"";
    let Some(body) = s.body.as_deref().filter(|_| s.resource_type.as_str() == "Binary") else {
        return Ok(None);
    };
    let Some(at) = body.rfind(MARK) else { return Ok(None) };
    let Some(data) = body[at + MARK.len()..].strip_suffix("\"}") else { return Ok(None) };
    let base64_text = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    if data.is_empty() || !data.len().is_multiple_of(4) || !data.bytes().all(base64_text) {
        return Ok(None);
    }
    let io = |e: std::io::Error| Error::Backend(format!("content: {e}"));
    let (file, path) = tempfile::NamedTempFile::new().map_err(io)?.into_parts();
    let mut file = std::io::BufWriter::new(file);
    let mut len = 0u64;
    // whole groups of four characters at a time
    for chunk in data.as_bytes().chunks(64 * 1024) {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(chunk) else { return Ok(None) };
        file.write_all(&bytes).map_err(io)?;
        len += bytes.len() as u64;
    }
    file.flush().map_err(io)?;
    Ok(Some((format!("{}}}", &body[..at]), Content::new(path, len))))
}

#[async_trait]
impl Store for Whole {
    async fn read(&self, ty: &ResourceType, id: &ResourceId) -> Result<Option<StoredResource>> {
        let mut s = self.0.read(ty, id).await?;
        if let Some(s) = &mut s {
            whole(&*self.0, s).await?;
        }
        Ok(s)
    }

    async fn vread(&self, ty: &ResourceType, id: &ResourceId, version: VersionId) -> Result<Option<StoredResource>> {
        let mut s = self.0.vread(ty, id, version).await?;
        if let Some(s) = &mut s {
            whole(&*self.0, s).await?;
        }
        Ok(s)
    }

    async fn create(
        &self,
        ty: &ResourceType,
        new: NewVersion,
        if_none_exist: Option<Criteria>,
        audit: AuditWrite,
    ) -> Result<CreateOutcome> {
        // a version written with content kept apart is answered without it: the caller
        // asks for it ([`crate::Repository::whole`]) if it shows the resource
        let mut out = self.0.create(ty, new, if_none_exist, audit).await?;
        if let CreateOutcome::Existing(s) = &mut out {
            whole(&*self.0, s).await?;
        }
        Ok(out)
    }

    async fn update(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        self.0.update(ty, id, new, if_match, audit).await
    }

    async fn conditional_update(
        &self,
        criteria: Criteria,
        id: Option<ResourceId>,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        self.0.conditional_update(criteria, id, new, if_match, audit).await
    }

    async fn delete(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<Option<StoredResource>> {
        self.0.delete(ty, id, if_match, audit).await
    }

    async fn conditional_delete(&self, criteria: Criteria, audit: AuditWrite) -> Result<Option<StoredResource>> {
        self.0.conditional_delete(criteria, audit).await
    }

    async fn find(&self, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>> {
        self.0.find(criteria, limit).await
    }

    async fn replace_index(&self, items: Vec<(ResourceType, ResourceId, VersionId, IndexRows)>) -> Result<usize> {
        self.0.replace_index(items).await
    }

    async fn transaction(
        &self,
        ops: Vec<TxOp>,
        audit: AuditWrite,
    ) -> std::result::Result<Vec<TxOutcome>, (usize, Error)> {
        // the operations of a transaction carry no content kept apart
        self.0.transaction(ops, audit).await
    }

    async fn search(&self, request: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
        whole_page(&*self.0, self.0.search(request, page_size, want_total).await?).await
    }

    async fn everything(&self, patient: &ResourceId, query: &EverythingQuery) -> Result<SearchPage> {
        whole_page(&*self.0, self.0.everything(patient, query).await?).await
    }

    async fn content_len(&self, id: &ResourceId, version: VersionId) -> Result<Option<u64>> {
        self.0.content_len(id, version).await
    }

    async fn content_part(&self, id: &ResourceId, version: VersionId, offset: u64) -> Result<Option<(u64, Vec<u8>)>> {
        self.0.content_part(id, version, offset).await
    }

    async fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        let mut page = self.0.history(scope, query).await?;
        for s in page.entries.iter_mut() {
            whole(&*self.0, s).await?;
        }
        Ok(page)
    }

    async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }

    async fn optimize(&self) -> Result<()> {
        self.0.optimize().await
    }

    async fn versions_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        let mut out = self.0.versions_after(after, limit).await?;
        // a page of large Binaries is cut short (but never empty): the caller asks for
        // the next from the last it got
        let mut held = 0usize;
        for (i, (_, s)) in out.iter_mut().enumerate() {
            if held >= PAGE_BYTES {
                out.truncate(i);
                break;
            }
            whole(&*self.0, s).await?;
            held += s.body.as_ref().map_or(0, String::len);
        }
        Ok(out)
    }

    async fn restore(&self, versions: Vec<(StoredResource, IndexRows, Option<Content>)>) -> Result<()> {
        self.0.restore(versions).await
    }

    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<()> {
        self.0.append_audit(rows).await
    }

    async fn chain_audit(&self, limit: usize, link: ChainLink) -> Result<(usize, Option<(i64, Vec<u8>)>)> {
        self.0.chain_audit(limit, link).await
    }

    async fn audit_chain(&self, after: i64, limit: usize) -> Result<Vec<ChainedEntry>> {
        self.0.audit_chain(after, limit).await
    }

    async fn audit_unchained(&self) -> Result<u64> {
        self.0.audit_unchained().await
    }

    async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<(i64, String)>> {
        self.0.audit_search(query).await
    }

    async fn put_account(&self, account: AccountRow, create: bool, audit: AuditRow) -> Result<()> {
        self.0.put_account(account, create, audit).await
    }

    async fn account(&self, key: AccountKey<'_>) -> Result<Option<AccountRow>> {
        self.0.account(key).await
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>> {
        self.0.accounts().await
    }

    async fn put_auth(&self, record: AuthRecord, audit: Option<AuditRow>) -> Result<()> {
        self.0.put_auth(record, audit).await
    }

    async fn claim_auth(&self, record: AuthRecord) -> Result<bool> {
        self.0.claim_auth(record).await
    }

    async fn auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        self.0.auth(kind, key).await
    }

    async fn take_auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        self.0.take_auth(kind, key).await
    }

    async fn auths(&self, kind: &str) -> Result<Vec<AuthRecord>> {
        self.0.auths(kind).await
    }

    async fn count_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        self.0.count_auths(kind, key_prefix).await
    }

    async fn remove_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        self.0.remove_auths(kind, key_prefix).await
    }

    async fn server_key(&self, name: &str, candidate: String) -> Result<String> {
        self.0.server_key(name, candidate).await
    }

    async fn append_checkpoint(&self, line: String) -> Result<()> {
        self.0.append_checkpoint(line).await
    }

    async fn checkpoints(&self) -> Result<Vec<String>> {
        self.0.checkpoints().await
    }
}
