//! Pagination: `DefaultPaginator` with `CursorPagination`, `PageIncrement` or
//! `OffsetIncrement`, and `NoPagination`.
//!
//! The first request goes without a token (unless `inject_on_first_request`); after each page
//! the strategy computes the next token from the response, or stops. The token goes where
//! `page_token_option` says (a query parameter, header or body field, or — `RequestPath` — as
//! the whole next URL); `page_size_option` sends the page size on every request.

use serde_json::{Map, Value};

use crate::client::Response;
use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{PaginationStrategy, Paginator, TokenOption};
use crate::request::Options;
use crate::ManifestSourceError;

/// What the strategy saw of the last page.
pub struct LastPage<'a> {
    pub response: &'a Response,
    pub body: &'a Value,
    pub records: usize,
    pub last_record: Option<&'a Value>,
}

/// A paginator for one partition's pages.
pub struct Pages<'p> {
    paginator: Option<&'p Paginator>,
    /// The token of the page about to be requested (`None`: the first page, not injected).
    pub token: Option<Value>,
    pub done: bool,
}

fn int(
    interp: &Interpolator,
    v: &Option<Value>,
    vars: &Vars,
) -> Result<Option<i64>, ManifestSourceError> {
    let Some(v) = v else { return Ok(None) };
    Ok(match interp.eval(v, vars, None)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn params_vars(vars: &Vars, params: &Map<String, Value>) -> Vars {
    let mut v = vars.clone();
    v.insert("parameters".into(), Value::Object(params.clone()));
    v
}

impl<'p> Pages<'p> {
    pub fn new(
        paginator: Option<&'p Paginator>,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<Self, ManifestSourceError> {
        let mut token = None;
        if let Some(Paginator::DefaultPaginator {
            pagination_strategy,
            ..
        }) = paginator
        {
            match pagination_strategy {
                PaginationStrategy::PageIncrement {
                    start_from_page,
                    inject_on_first_request: true,
                    parameters,
                    ..
                } => {
                    token = Some(Value::from(
                        int(interp, start_from_page, &params_vars(vars, parameters))?.unwrap_or(0),
                    ));
                }
                PaginationStrategy::OffsetIncrement {
                    inject_on_first_request: true,
                    ..
                } => token = Some(Value::from(0)),
                _ => {}
            }
        }
        Ok(Self {
            paginator,
            token,
            done: false,
        })
    }

    /// The `next_page_token` template variable.
    pub fn token_var(&self) -> Value {
        match &self.token {
            Some(t) => serde_json::json!({"next_page_token": t}),
            None => Value::Object(Map::new()),
        }
    }

    /// The next URL, when the token is a `RequestPath`.
    pub fn path(&self) -> Option<String> {
        match (self.paginator, &self.token) {
            (
                Some(Paginator::DefaultPaginator {
                    page_token_option: Some(TokenOption::RequestPath {}),
                    ..
                }),
                Some(t),
            ) => Some(crate::interpolate::py_str(t)),
            _ => None,
        }
    }

    /// The options this page's request carries: the token and the page size.
    pub fn options(
        &self,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<Options, ManifestSourceError> {
        let mut options = Options::default();
        let Some(Paginator::DefaultPaginator {
            pagination_strategy,
            page_token_option,
            page_size_option,
            parameters,
        }) = self.paginator
        else {
            return Ok(options);
        };
        let v = params_vars(vars, parameters);
        if let (Some(TokenOption::RequestOption(option)), Some(token)) =
            (page_token_option, &self.token)
        {
            options.inject(option, token.clone(), interp, &v)?;
        }
        if let Some(option) = page_size_option {
            let size = match pagination_strategy {
                PaginationStrategy::CursorPagination {
                    page_size,
                    parameters,
                    ..
                }
                | PaginationStrategy::PageIncrement {
                    page_size,
                    parameters,
                    ..
                }
                | PaginationStrategy::OffsetIncrement {
                    page_size,
                    parameters,
                    ..
                } => int(interp, page_size, &params_vars(&v, parameters))?,
            };
            if let Some(size) = size {
                options.inject(option, Value::from(size), interp, &v)?;
            }
        }
        Ok(options)
    }

    /// Moves to the next page after `last`; `done` when there is none.
    pub fn advance(
        &mut self,
        last: &LastPage<'_>,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<(), ManifestSourceError> {
        let Some(Paginator::DefaultPaginator {
            pagination_strategy,
            parameters,
            ..
        }) = self.paginator
        else {
            self.done = true;
            return Ok(());
        };
        let v = params_vars(vars, parameters);
        let next = match pagination_strategy {
            PaginationStrategy::CursorPagination {
                cursor_value,
                stop_condition,
                parameters,
                ..
            } => {
                let mut cv = params_vars(&v, parameters);
                cv.insert("response".into(), last.body.clone());
                cv.insert("headers".into(), last.response.headers_var());
                cv.insert(
                    "last_record".into(),
                    last.last_record.cloned().unwrap_or(Value::Null),
                );
                cv.insert("last_page_size".into(), Value::from(last.records));
                cv.insert(
                    "last_page_token_value".into(),
                    self.token.clone().unwrap_or(Value::Null),
                );
                let stop = match stop_condition {
                    Some(c) => interp.eval_bool(c, &cv)?,
                    None => false,
                };
                if stop {
                    None
                } else {
                    match interp.eval(cursor_value, &cv, None)? {
                        Value::Null | Value::Bool(false) => None,
                        Value::String(s) if s.is_empty() => None,
                        Value::Number(n) if n.as_f64() == Some(0.0) => None,
                        t => Some(t),
                    }
                }
            }
            PaginationStrategy::PageIncrement {
                page_size,
                start_from_page,
                parameters,
                ..
            } => {
                let pv = params_vars(&v, parameters);
                let size = int(interp, page_size, &pv)?;
                if last.records == 0 || size.is_some_and(|s| (last.records as i64) < s) {
                    None
                } else {
                    let current = match &self.token {
                        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                        _ => int(interp, start_from_page, &pv)?.unwrap_or(0),
                    };
                    Some(Value::from(current + 1))
                }
            }
            PaginationStrategy::OffsetIncrement {
                page_size,
                parameters,
                ..
            } => {
                let size = int(interp, page_size, &params_vars(&v, parameters))?;
                if last.records == 0 || size.is_some_and(|s| (last.records as i64) < s) {
                    None
                } else {
                    let current = match &self.token {
                        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                        _ => 0,
                    };
                    Some(Value::from(current + last.records as i64))
                }
            }
        };
        match next {
            Some(t) => self.token = Some(t),
            None => self.done = true,
        }
        Ok(())
    }
}
