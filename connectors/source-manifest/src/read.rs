//! Reading a stream: its slices, and the pages of each slice as records.
//!
//! [`StreamReader`] runs one `DeclarativeStream`'s `SimpleRetriever`: it lists the slices
//! (partition routers × cursor windows; a substream's parent is read first, completely) and
//! [`Pages`] walks one slice's pages — request, error handling, extraction, filter,
//! transformations — yielding each page's records.

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::auth::Auth;
use crate::client::Http;
use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{DeclarativeStream, PartitionRouter};
use crate::paginate::{LastPage, Pages as PageState};
use crate::slices::{DateCursor, Slice};
use crate::{request, select, ManifestSourceError};

/// What every read of a source shares.
pub struct Shared {
    pub interp: std::sync::Arc<Interpolator>,
    pub http: Http,
    pub config: Value,
}

/// Reads one stream.
pub struct StreamReader<'a> {
    pub shared: &'a Shared,
    pub stream: &'a DeclarativeStream,
    auth: Auth,
}

impl<'a> StreamReader<'a> {
    pub fn new(
        shared: &'a Shared,
        stream: &'a DeclarativeStream,
    ) -> Result<Self, ManifestSourceError> {
        let auth = Auth::build(
            stream.retriever.requester.authenticator.as_ref(),
            &shared.config,
        )?;
        Ok(Self {
            shared,
            stream,
            auth,
        })
    }

    fn vars(&self) -> Vars {
        let mut v = Vars::new();
        v.insert("config".into(), self.shared.config.clone());
        v
    }

    fn interp(&self) -> &Interpolator {
        &self.shared.interp
    }

    /// The stream's datetime cursor, evaluated against the config.
    pub fn cursor(&self) -> Result<Option<DateCursor>, ManifestSourceError> {
        self.stream
            .incremental_sync
            .as_ref()
            .map(|c| DateCursor::new(c, self.interp(), &self.vars()))
            .transpose()
    }

    /// Every slice of the stream, in order; windows start from `state` when given.
    pub fn slices<'s>(
        &'s self,
        cursor: Option<&'s DateCursor>,
        state: Option<chrono::DateTime<chrono::Utc>>,
    ) -> BoxFuture<'s, Result<Vec<Slice>, ManifestSourceError>> {
        Box::pin(async move {
            let mut slices = vec![Slice::default()];
            if let Some(routers) = &self.stream.retriever.partition_router {
                for router in routers.list() {
                    let partitions = self.partitions(router).await?;
                    slices = Slice::product(slices, partitions);
                }
            }
            if let (Some(cursor), Some(model)) = (cursor, &self.stream.incremental_sync) {
                let mut windows = Vec::new();
                let mut v = self.vars();
                v.insert("parameters".into(), Value::Object(model.parameters.clone()));
                for w in cursor.windows(state) {
                    windows.push(cursor.window_slice(w, model, self.interp(), &v)?);
                }
                slices = Slice::product(slices, windows);
            }
            Ok(slices)
        })
    }

    async fn partitions(
        &self,
        router: &PartitionRouter,
    ) -> Result<Vec<Slice>, ManifestSourceError> {
        let interp = self.interp();
        match router {
            PartitionRouter::ListPartitionRouter {
                cursor_field,
                values,
                request_option,
                parameters,
            } => {
                let mut v = self.vars();
                v.insert("parameters".into(), Value::Object(parameters.clone()));
                let field = interp.eval_string(cursor_field, &v)?;
                let values = match interp.eval(values, &v, None)? {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    other => {
                        return Err(ManifestSourceError::Manifest(format!(
                            "stream `{}`: ListPartitionRouter.values must be a list, not `{}`",
                            self.stream.name,
                            crate::interpolate::py_str(&other)
                        )))
                    }
                };
                let mut out = Vec::new();
                for value in values {
                    let mut s = Slice::default();
                    s.partition.insert(field.clone(), value.clone());
                    if let Some(o) = request_option {
                        s.options.inject(o, value, interp, &v)?;
                    }
                    out.push(s);
                }
                Ok(out)
            }
            PartitionRouter::SubstreamPartitionRouter {
                parent_stream_configs,
            } => {
                let mut out = Vec::new();
                for parent in parent_stream_configs {
                    let mut v = self.vars();
                    v.insert(
                        "parameters".into(),
                        Value::Object(parent.parameters.clone()),
                    );
                    let key = interp.eval_string(&parent.parent_key, &v)?;
                    let field = interp.eval_string(&parent.partition_field, &v)?;
                    let reader = StreamReader::new(self.shared, &parent.stream)?;
                    let cursor = reader.cursor()?;
                    for slice in reader.slices(cursor.as_ref(), None).await? {
                        let mut pages = reader.pages(&slice)?;
                        while let Some(records) = pages.next().await? {
                            for record in records {
                                let mut node = &record;
                                for k in key.split('/') {
                                    node = node.get(k).unwrap_or(&Value::Null);
                                }
                                if node.is_null() {
                                    continue;
                                }
                                let mut s = Slice::default();
                                s.partition.insert(field.clone(), node.clone());
                                s.partition.insert("parent_slice".into(), slice.var());
                                if let Some(o) = &parent.request_option {
                                    s.options.inject(o, node.clone(), interp, &v)?;
                                }
                                out.push(s);
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The pages of one slice.
    pub fn pages<'p>(&'p self, slice: &'p Slice) -> Result<Pages<'p, 'a>, ManifestSourceError> {
        let state = PageState::new(
            self.stream.retriever.paginator.as_ref(),
            self.interp(),
            &self.vars(),
        )?;
        Ok(Pages {
            reader: self,
            slice,
            state,
        })
    }
}

/// The pages of one slice, requested one at a time.
pub struct Pages<'p, 'a> {
    reader: &'p StreamReader<'a>,
    slice: &'p Slice,
    state: PageState<'p>,
}

impl Pages<'_, '_> {
    /// The next page's records (filtered and transformed), or `None` after the last page.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, ManifestSourceError> {
        if self.state.done {
            return Ok(None);
        }
        let r = self.reader;
        let interp = r.interp();
        let retriever = &r.stream.retriever;
        let requester = &retriever.requester;
        let mut vars = r.vars();
        vars.insert("stream_slice".into(), self.slice.var());
        vars.insert("next_page_token".into(), self.state.token_var());
        let mut rv = vars.clone();
        rv.insert(
            "parameters".into(),
            Value::Object(requester.parameters.clone()),
        );

        let mut options = request::Options::default();
        if !(retriever.ignore_stream_slicer_parameters_on_paginated_requests
            && self.state.token.is_some())
        {
            options.merge(self.slice.options.clone());
        }
        options.merge(self.state.options(interp, &rv)?);
        r.auth
            .apply(&r.shared.http, interp, &rv, &mut options)
            .await?;
        let path = self.state.path();
        let req = request::build(requester, interp, &rv, path.as_deref(), options)?;
        let Some(response) = r
            .shared
            .http
            .send(&req, requester.error_handler.as_ref(), &r.stream.name)
            .await?
        else {
            self.state.done = true;
            return Ok(Some(Vec::new()));
        };
        let body = response.json().map_err(|e| {
            ManifestSourceError::Http(format!(
                "stream `{}`: {} {}: {e}",
                r.stream.name,
                req.method,
                request::redacted(&req.url)
            ))
        })?;
        let selector = &retriever.record_selector;
        let mut sv = vars.clone();
        sv.insert(
            "parameters".into(),
            Value::Object(selector.parameters.clone()),
        );
        let extracted = select::extract(&selector.extractor, body.clone(), interp, &sv)?;
        let mut records = Vec::with_capacity(extracted.len());
        for mut record in extracted {
            if !record.is_object() {
                return Err(ManifestSourceError::Http(format!(
                    "stream `{}`: the extractor's path selects values that are not objects (`{}`); check `field_path`",
                    r.stream.name,
                    truncate(&record.to_string())
                )));
            }
            if let Some(filter) = &selector.record_filter {
                if !select::keep(filter, &record, interp, &sv)? {
                    continue;
                }
            }
            let mut tv = vars.clone();
            tv.insert(
                "parameters".into(),
                Value::Object(r.stream.parameters.clone()),
            );
            select::transform(&r.stream.transformations, &mut record, interp, &tv)?;
            records.push(record);
        }
        let last = LastPage {
            response: &response,
            body: &body,
            records: records.len(),
            last_record: records.last(),
        };
        self.state.advance(&last, interp, &vars)?;
        Ok(Some(records))
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The CDK's per-stream state for a datetime cursor.
pub fn cursor_state(cursor: &DateCursor, latest: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    let mut m = Map::new();
    if let Some(dt) = latest {
        m.insert(cursor.field.clone(), Value::String(cursor.format(&dt)));
    }
    Value::Object(m)
}
