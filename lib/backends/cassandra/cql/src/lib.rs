//! chat_cql: the C surface in `../cql.h` over the `scylla` driver.
//!
//! Internal to libchat's cassandra backend. Every `extern "C"` function
//! catches panics (nothing unwinds into C) and checks its pointers. Each
//! session owns a tokio runtime; asynchronous executions run as tasks on it
//! and finish by calling the C `done` callback exactly once. A `Completion`
//! guard makes "exactly once" hold even if a task is dropped or panics: its
//! destructor fires the callback with an error.

// Every entry point is unsafe to call with bad pointers; its contract is
// the C header, cql.h, not a Rust doc comment.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    BadQuery, DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError,
};
use scylla::frame::types::Consistency;
use scylla::policies::retry::{
    DefaultRetrySession, RequestInfo, RetryDecision, RetryPolicy, RetrySession,
};
use scylla::response::query_result::QueryResult;
use scylla::response::PagingState;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlTimestamp, CqlValue, Row};

// ------------------------------------------------------------ codes --

const OK: c_int = 0;
const EINVAL: c_int = -1;
const ECONNECT: c_int = -2;
const ETIMEOUT: c_int = -3;
const EUNAVAILABLE: c_int = -4;
const EWRITE_TIMEOUT: c_int = -5;
const EREAD_TIMEOUT: c_int = -6;
const ESYNTAX: c_int = -7;
const EINVALID: c_int = -8;
const EEXISTS: c_int = -9;
const EOVERLOADED: c_int = -10;
const ESERVER: c_int = -11;
const ETYPE: c_int = -12;
const ENULL: c_int = -13;
const ERANGE: c_int = -14;
const ECLOSED: c_int = -15;
const EINTERNAL: c_int = -16;

const MSG_LEN: usize = 500;

/// `chat__cql_error` in cql.h.
#[repr(C)]
pub struct CqlError {
    code: c_int,
    db_code: c_int,
    message: [c_char; MSG_LEN],
}

/// An error on the Rust side, copied into a `CqlError` at the boundary.
#[derive(Debug, Clone)]
struct Fail {
    code: c_int,
    db_code: c_int,
    message: String,
}

impl Fail {
    fn new(code: c_int, message: impl Into<String>) -> Fail {
        Fail { code, db_code: 0, message: message.into() }
    }

    fn to_c(&self) -> CqlError {
        let mut e = CqlError { code: self.code, db_code: self.db_code, message: [0; MSG_LEN] };
        write_msg(&mut e.message, &self.message);
        e
    }
}

fn ok_error() -> CqlError {
    CqlError { code: OK, db_code: 0, message: [0; MSG_LEN] }
}

/// Copies `s` into a C buffer, truncating at a character boundary and
/// replacing inner NULs, always NUL-terminated.
fn write_msg(buf: &mut [c_char; MSG_LEN], s: &str) {
    let mut end = s.len().min(MSG_LEN - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    for (i, b) in s.as_bytes()[..end].iter().enumerate() {
        buf[i] = if *b == 0 { b'?' as c_char } else { *b as c_char };
    }
    buf[end] = 0;
}

/// Stores `f` in the caller's optional error slot and returns its code.
unsafe fn report(err: *mut CqlError, f: &Fail) -> c_int {
    if !err.is_null() {
        *err = f.to_c();
    }
    f.code
}

unsafe fn clear(err: *mut CqlError) {
    if !err.is_null() {
        *err = ok_error();
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic in chat_cql: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic in chat_cql: {s}")
    } else {
        "panic in chat_cql".to_string()
    }
}

/// Runs `f`, turning a panic into EINTERNAL reported through `err`.
fn guard<F: FnOnce() -> c_int>(err: *mut CqlError, f: F) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(p) => unsafe { report(err, &Fail::new(EINTERNAL, panic_message(&*p))) },
    }
}

/// For entry points that return a value and have no error slot.
fn guard_or<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn db_fail(db: &DbError, msg: &str) -> Fail {
    let (code, db_code) = match db {
        DbError::Unavailable { .. } => (EUNAVAILABLE, 0x1000),
        DbError::Overloaded => (EOVERLOADED, 0x1001),
        DbError::IsBootstrapping => (EOVERLOADED, 0x1002),
        DbError::TruncateError => (ESERVER, 0x1003),
        DbError::WriteTimeout { .. } => (EWRITE_TIMEOUT, 0x1100),
        DbError::ReadTimeout { .. } => (EREAD_TIMEOUT, 0x1200),
        DbError::ReadFailure { .. } => (ESERVER, 0x1300),
        DbError::FunctionFailure { .. } => (ESERVER, 0x1400),
        DbError::WriteFailure { .. } => (ESERVER, 0x1500),
        DbError::SyntaxError => (ESYNTAX, 0x2000),
        DbError::Unauthorized => (ESERVER, 0x2100),
        DbError::Invalid => (EINVALID, 0x2200),
        DbError::ConfigError => (EINVALID, 0x2300),
        DbError::AlreadyExists { .. } => (EEXISTS, 0x2400),
        DbError::Unprepared { .. } => (ESERVER, 0x2500),
        DbError::ServerError => (ESERVER, 0x0000),
        DbError::ProtocolError => (EINTERNAL, 0x000A),
        DbError::AuthenticationError => (ECONNECT, 0x0100),
        DbError::Other(c) => (ESERVER, *c),
        _ => (ESERVER, 0),
    };
    Fail { code, db_code, message: format!("{db}: {msg}") }
}

fn attempt_fail(e: &RequestAttemptError) -> Fail {
    match e {
        RequestAttemptError::DbError(db, msg) => db_fail(db, msg),
        RequestAttemptError::SerializationError(_) => Fail::new(ETYPE, e.to_string()),
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => Fail::new(ECONNECT, e.to_string()),
        _ => Fail::new(EINTERNAL, e.to_string()),
    }
}

fn exec_fail(e: &ExecutionError) -> Fail {
    match e {
        ExecutionError::LastAttemptError(a) => attempt_fail(a),
        ExecutionError::RequestTimeout(_) => Fail::new(ETIMEOUT, e.to_string()),
        ExecutionError::BadQuery(BadQuery::SerializationError(_)) => {
            Fail::new(ETYPE, e.to_string())
        }
        ExecutionError::BadQuery(_) => Fail::new(EINVAL, e.to_string()),
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => {
            Fail::new(ECONNECT, e.to_string())
        }
        ExecutionError::PrepareError(p) => prepare_fail(p),
        ExecutionError::SchemaAgreementError(_) | ExecutionError::MetadataError(_) => {
            Fail::new(ETIMEOUT, e.to_string())
        }
        _ => Fail::new(ESERVER, e.to_string()),
    }
}

fn prepare_fail(e: &PrepareError) -> Fail {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => {
            let mut f = attempt_fail(first_attempt);
            f.message = format!("prepare: {}", f.message);
            f
        }
        PrepareError::ConnectionPoolError(_) => Fail::new(ECONNECT, e.to_string()),
        _ => Fail::new(EINTERNAL, e.to_string()),
    }
}

fn connect_fail(e: &NewSessionError) -> Fail {
    match e {
        NewSessionError::UseKeyspaceError(_) => Fail::new(EINVALID, e.to_string()),
        NewSessionError::FailedToResolveAnyHostname(_)
        | NewSessionError::EmptyKnownNodesList
        | NewSessionError::IllegalConfig(_) => Fail::new(EINVAL, e.to_string()),
        _ => Fail::new(ECONNECT, e.to_string()),
    }
}

#[no_mangle]
pub extern "C" fn chat__cql_code_name(code: c_int) -> *const c_char {
    let s: &'static [u8] = match code {
        OK => b"OK\0",
        EINVAL => b"EINVAL\0",
        ECONNECT => b"ECONNECT\0",
        ETIMEOUT => b"ETIMEOUT\0",
        EUNAVAILABLE => b"EUNAVAILABLE\0",
        EWRITE_TIMEOUT => b"EWRITE_TIMEOUT\0",
        EREAD_TIMEOUT => b"EREAD_TIMEOUT\0",
        ESYNTAX => b"ESYNTAX\0",
        EINVALID => b"EINVALID\0",
        EEXISTS => b"EEXISTS\0",
        EOVERLOADED => b"EOVERLOADED\0",
        ESERVER => b"ESERVER\0",
        ETYPE => b"ETYPE\0",
        ENULL => b"ENULL\0",
        ERANGE => b"ERANGE\0",
        ECLOSED => b"ECLOSED\0",
        EINTERNAL => b"EINTERNAL\0",
        _ => b"unknown\0",
    };
    s.as_ptr() as *const c_char
}

#[no_mangle]
pub extern "C" fn chat__cql_code_is_retryable(code: c_int) -> bool {
    matches!(code, ECONNECT | ETIMEOUT | EUNAVAILABLE | EWRITE_TIMEOUT | EREAD_TIMEOUT | EOVERLOADED)
}

fn consistency(c: c_int, default: Consistency) -> Option<Consistency> {
    Some(match c {
        0 => default,
        1 => Consistency::Any,
        2 => Consistency::One,
        3 => Consistency::Two,
        4 => Consistency::Three,
        5 => Consistency::Quorum,
        6 => Consistency::All,
        7 => Consistency::LocalQuorum,
        8 => Consistency::EachQuorum,
        9 => Consistency::LocalOne,
        _ => return None,
    })
}

unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::new(EINVAL, format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Fail::new(EINVAL, format!("{what} is not UTF-8")))
}

unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        Some(&[])
    } else if p.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(p as *const u8, len))
    }
}

// ---------------------------------------------------- retry policy --

/// The driver's default retry policy, except that an Unavailable answer is
/// final. The coordinator that says "too few replicas alive" is right in a
/// small ring, and retrying on another node would end on one whose pool
/// is down, hiding EUNAVAILABLE behind ECONNECT.
#[derive(Debug)]
struct ChatRetryPolicy;

struct ChatRetrySession(DefaultRetrySession);

impl RetryPolicy for ChatRetryPolicy {
    fn new_session(&self) -> Box<dyn RetrySession> {
        Box::new(ChatRetrySession(DefaultRetrySession::new()))
    }
}

impl RetrySession for ChatRetrySession {
    fn decide_should_retry(&mut self, info: RequestInfo) -> RetryDecision {
        if let RequestAttemptError::DbError(DbError::Unavailable { .. }, _) = info.error {
            return RetryDecision::DontRetry;
        }
        self.0.decide_should_retry(info)
    }

    fn reset(&mut self) {
        self.0.reset()
    }
}

// --------------------------------------------------------- sessions --

/// In-flight accounting, shared with the tasks so close() can wait.
struct Shared {
    inflight: Mutex<usize>,
    idle: Condvar,
    closing: AtomicBool,
}

/// `chat__cql_session`.
pub struct CqlSession {
    rt: Option<tokio::runtime::Runtime>,
    session: Arc<Session>,
    shared: Arc<Shared>,
    default_cl: Consistency,
    timeout: Duration,
}

#[repr(C)]
pub struct CqlConfig {
    contact_points: *const c_char,
    keyspace: *const c_char,
    consistency: c_int,
    connect_timeout_ms: u32,
    request_timeout_ms: u32,
    threads: u32,
}

fn on_session_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

unsafe fn connect_inner(cfg: *const CqlConfig, out: *mut *mut CqlSession) -> Result<(), Fail> {
    if cfg.is_null() || out.is_null() {
        return Err(Fail::new(EINVAL, "config or out is NULL"));
    }
    *out = std::ptr::null_mut();
    if on_session_thread() {
        return Err(Fail::new(EINVAL, "blocking call from a chat_cql thread"));
    }
    let cfg = &*cfg;
    let points = c_str(cfg.contact_points, "contact_points")?;
    let nodes: Vec<&str> = points.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if nodes.is_empty() {
        return Err(Fail::new(EINVAL, "contact_points is empty"));
    }
    let keyspace = if cfg.keyspace.is_null() { None } else { Some(c_str(cfg.keyspace, "keyspace")?) };
    let default_cl = consistency(cfg.consistency, Consistency::Quorum)
        .ok_or_else(|| Fail::new(EINVAL, "unknown consistency"))?;
    let connect_timeout =
        Duration::from_millis(if cfg.connect_timeout_ms == 0 { 5000 } else { cfg.connect_timeout_ms.into() });
    let timeout =
        Duration::from_millis(if cfg.request_timeout_ms == 0 { 10000 } else { cfg.request_timeout_ms.into() });
    let threads = if cfg.threads == 0 { 2 } else { cfg.threads.min(64) as usize };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("chat-cql")
        .enable_all()
        .build()
        .map_err(|e| Fail::new(EINTERNAL, format!("tokio runtime: {e}")))?;

    let profile = ExecutionProfile::builder()
        .consistency(default_cl)
        .request_timeout(Some(timeout))
        .retry_policy(Arc::new(ChatRetryPolicy))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&nodes)
        .connection_timeout(connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(ks) = keyspace {
        builder = builder.use_keyspace(ks, false);
    }
    // The driver's own connect has no overall deadline when every node
    // refuses slowly; bound it here.
    let session = rt
        .block_on(async { tokio::time::timeout(connect_timeout * 2, builder.build()).await })
        .map_err(|_| Fail::new(ECONNECT, format!("connect to {points}: timed out")))?
        .map_err(|e| {
            let mut f = connect_fail(&e);
            f.message = format!("connect to {points}: {}", f.message);
            f
        })?;
    let s = Box::new(CqlSession {
        rt: Some(rt),
        session: Arc::new(session),
        shared: Arc::new(Shared { inflight: Mutex::new(0), idle: Condvar::new(), closing: AtomicBool::new(false) }),
        default_cl,
        timeout,
    });
    *out = Box::into_raw(s);
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_connect(
    cfg: *const CqlConfig,
    out: *mut *mut CqlSession,
    err: *mut CqlError,
) -> c_int {
    guard(err, || match connect_inner(cfg, out) {
        Ok(()) => {
            clear(err);
            OK
        }
        Err(f) => report(err, &f),
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_close(s: *mut CqlSession) -> c_int {
    guard(std::ptr::null_mut(), || {
        if s.is_null() {
            return OK;
        }
        if on_session_thread() {
            return EINVAL;
        }
        let sess = &*s;
        sess.shared.closing.store(true, Ordering::SeqCst);
        {
            let mut n = sess.shared.inflight.lock().unwrap_or_else(|p| p.into_inner());
            while *n > 0 {
                n = sess.shared.idle.wait(n).unwrap_or_else(|p| p.into_inner());
            }
        }
        let CqlSession { rt, session, .. } = *Box::from_raw(s);
        // The driver's background tasks must be dropped inside the runtime
        // they were spawned on; then the runtime stops its threads.
        if let Some(rt) = rt {
            {
                let _in_rt = rt.enter();
                drop(session);
            }
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_inflight(s: *const CqlSession) -> usize {
    guard_or(0, || {
        if s.is_null() {
            return 0;
        }
        let sess = &*s;
        *sess.shared.inflight.lock().unwrap_or_else(|p| p.into_inner())
    })
}

// -------------------------------------------------------- prepared --

/// `chat__cql_prepared`: shared with the tasks that execute it.
pub struct CqlPrepared {
    stmt: Arc<PreparedStatement>,
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_prepare(
    s: *mut CqlSession,
    cql: *const c_char,
    cl: c_int,
    page_size: i32,
    flags: u32,
    out: *mut *mut CqlPrepared,
    err: *mut CqlError,
) -> c_int {
    guard(err, || {
        let r = (|| -> Result<(), Fail> {
            if s.is_null() || out.is_null() {
                return Err(Fail::new(EINVAL, "session or out is NULL"));
            }
            *out = std::ptr::null_mut();
            let sess = &*s;
            if on_session_thread() {
                return Err(Fail::new(EINVAL, "blocking call from a chat_cql thread"));
            }
            let text = c_str(cql, "cql")?;
            let c = consistency(cl, sess.default_cl).ok_or_else(|| Fail::new(EINVAL, "unknown consistency"))?;
            let rt = sess.rt.as_ref().ok_or_else(|| Fail::new(ECLOSED, "session is closed"))?;
            let session = sess.session.clone();
            let timeout = sess.timeout;
            let mut stmt = Statement::new(text);
            stmt.set_request_timeout(Some(timeout));
            let _busy = Busy::enter(&sess.shared)?;
            let mut p = rt
                .block_on(async move { tokio::time::timeout(timeout, session.prepare(stmt)).await })
                .map_err(|_| Fail::new(ETIMEOUT, "prepare: timed out"))?
                .map_err(|e| prepare_fail(&e))?;
            p.set_consistency(c);
            p.set_page_size(if page_size <= 0 { 5000 } else { page_size });
            p.set_is_idempotent(flags & 1 != 0);
            *out = Box::into_raw(Box::new(CqlPrepared { stmt: Arc::new(p) }));
            Ok(())
        })();
        match r {
            Ok(()) => {
                clear(err);
                OK
            }
            Err(f) => report(err, &f),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_prepared_free(p: *mut CqlPrepared) {
    guard_or((), || {
        if !p.is_null() {
            drop(Box::from_raw(p));
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_prepared_params(p: *const CqlPrepared) -> usize {
    guard_or(0, || if p.is_null() { 0 } else { (*p).stmt.get_variable_col_specs().len() })
}

// ---------------------------------------------------------- values --

#[derive(Clone)]
enum Slot {
    Unset,
    Null,
    Val(CqlValue),
}

/// `chat__cql_values`.
pub struct CqlValues {
    slots: Vec<Slot>,
}

impl CqlValues {
    /// The bound row, or EINVAL naming the first slot left unset.
    fn row(&self) -> Result<Vec<Option<CqlValue>>, Fail> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Slot::Unset => Err(Fail::new(EINVAL, format!("value {i} is not bound"))),
                Slot::Null => Ok(None),
                Slot::Val(v) => Ok(Some(v.clone())),
            })
            .collect()
    }
}

unsafe fn values_row(v: *const CqlValues) -> Result<Vec<Option<CqlValue>>, Fail> {
    if v.is_null() {
        Ok(Vec::new())
    } else {
        (*v).row()
    }
}

#[no_mangle]
pub extern "C" fn chat__cql_values_new(n: usize) -> *mut CqlValues {
    guard_or(std::ptr::null_mut(), || {
        if n > 65535 {
            return std::ptr::null_mut();
        }
        Box::into_raw(Box::new(CqlValues { slots: vec![Slot::Unset; n] }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_free(v: *mut CqlValues) {
    guard_or((), || {
        if !v.is_null() {
            drop(Box::from_raw(v));
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_clear(v: *mut CqlValues) {
    guard_or((), || {
        if !v.is_null() {
            for s in (*v).slots.iter_mut() {
                *s = Slot::Unset;
            }
        }
    })
}

unsafe fn set(v: *mut CqlValues, i: usize, f: impl FnOnce() -> Option<Slot>) -> c_int {
    guard_or(EINTERNAL, || {
        if v.is_null() {
            return EINVAL;
        }
        let v = &mut *v;
        if i >= v.slots.len() {
            return EINVAL;
        }
        match f() {
            Some(slot) => {
                v.slots[i] = slot;
                OK
            }
            None => EINVAL,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_null(v: *mut CqlValues, i: usize) -> c_int {
    set(v, i, || Some(Slot::Null))
}

unsafe fn text_of(s: *const c_char, len: usize) -> Option<String> {
    let b = bytes(s as *const c_void, len)?;
    String::from_utf8(b.to_vec()).ok()
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_text(v: *mut CqlValues, i: usize, s: *const c_char, len: usize) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::Text(text_of(s, len)?))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_bigint(v: *mut CqlValues, i: usize, x: i64) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::BigInt(x))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_int(v: *mut CqlValues, i: usize, x: i32) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::Int(x))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_smallint(v: *mut CqlValues, i: usize, x: i16) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::SmallInt(x))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_bool(v: *mut CqlValues, i: usize, x: bool) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::Boolean(x))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_blob(v: *mut CqlValues, i: usize, p: *const c_void, len: usize) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::Blob(bytes(p, len)?.to_vec()))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_timestamp(v: *mut CqlValues, i: usize, ms: i64) -> c_int {
    set(v, i, || Some(Slot::Val(CqlValue::Timestamp(CqlTimestamp(ms)))))
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_values_text_list(
    v: *mut CqlValues,
    i: usize,
    items: *const *const c_char,
    lens: *const usize,
    n: usize,
) -> c_int {
    set(v, i, || {
        if n > 0 && (items.is_null() || lens.is_null()) {
            return None;
        }
        let mut list = Vec::with_capacity(n);
        for k in 0..n {
            list.push(CqlValue::Text(text_of(*items.add(k), *lens.add(k))?));
        }
        Some(Slot::Val(CqlValue::List(list)))
    })
}

// --------------------------------------------------------- results --

enum Val {
    Null,
    /// UTF-8 bytes plus a trailing NUL (not counted in the length).
    Text(Vec<u8>),
    BigInt(i64),
    Int(i32),
    SmallInt(i16),
    Bool(bool),
    Blob(Vec<u8>),
    Timestamp(i64),
    TextList(Vec<Vec<u8>>),
    Other,
}

fn nul_text(s: String) -> Vec<u8> {
    let mut b = s.into_bytes();
    b.push(0);
    b
}

fn to_val(v: Option<CqlValue>) -> Val {
    match v {
        None => Val::Null,
        Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => Val::Text(nul_text(s)),
        Some(CqlValue::BigInt(x)) => Val::BigInt(x),
        Some(CqlValue::Counter(c)) => Val::BigInt(c.0),
        Some(CqlValue::Int(x)) => Val::Int(x),
        Some(CqlValue::SmallInt(x)) => Val::SmallInt(x),
        Some(CqlValue::Boolean(x)) => Val::Bool(x),
        Some(CqlValue::Blob(b)) => Val::Blob(b),
        Some(CqlValue::Timestamp(t)) => Val::Timestamp(t.0),
        Some(CqlValue::List(items)) | Some(CqlValue::Set(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    CqlValue::Text(s) | CqlValue::Ascii(s) => out.push(nul_text(s)),
                    _ => return Val::Other,
                }
            }
            Val::TextList(out)
        }
        Some(_) => Val::Other,
    }
}

/// `chat__cql_result`: one page, converted to owned values on the driver
/// thread so the C side can read it anywhere without Rust lifetimes.
pub struct CqlResult {
    names: Vec<CString>,
    rows: Vec<Vec<Val>>,
    paging: Option<Vec<u8>>,
}

fn convert(qr: QueryResult, paging: Option<Vec<u8>>) -> Result<CqlResult, Fail> {
    let rows_result = match qr.into_rows_result() {
        Ok(r) => r,
        // Writes and DDL carry no rows.
        Err(_) => return Ok(CqlResult { names: Vec::new(), rows: Vec::new(), paging }),
    };
    let names = rows_result
        .column_specs()
        .iter()
        .map(|c| CString::new(c.name().replace('\0', "?")).unwrap_or_default())
        .collect();
    let mut rows = Vec::with_capacity(rows_result.rows_num());
    let it = rows_result
        .rows::<Row>()
        .map_err(|e| Fail::new(EINTERNAL, format!("rows: {e}")))?;
    for row in it {
        let row = row.map_err(|e| Fail::new(EINTERNAL, format!("row: {e}")))?;
        rows.push(row.columns.into_iter().map(to_val).collect());
    }
    Ok(CqlResult { names, rows, paging })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_free(r: *mut CqlResult) {
    guard_or((), || {
        if !r.is_null() {
            drop(Box::from_raw(r));
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_rows(r: *const CqlResult) -> usize {
    guard_or(0, || if r.is_null() { 0 } else { (*r).rows.len() })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_columns(r: *const CqlResult) -> usize {
    guard_or(0, || if r.is_null() { 0 } else { (*r).names.len() })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_column_name(r: *const CqlResult, col: usize) -> *const c_char {
    guard_or(std::ptr::null(), || {
        if r.is_null() {
            return std::ptr::null();
        }
        let r = &*r;
        r.names.get(col).map_or(std::ptr::null(), |n| n.as_ptr())
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_column_index(r: *const CqlResult, name: *const c_char) -> c_int {
    guard_or(-1, || {
        if r.is_null() || name.is_null() {
            return -1;
        }
        let want = CStr::from_ptr(name);
        (*r).names.iter().position(|n| n.as_c_str() == want).map_or(-1, |i| i as c_int)
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_paging_state(
    r: *const CqlResult,
    data: *mut *const u8,
    len: *mut usize,
) -> bool {
    guard_or(false, || {
        if r.is_null() {
            return false;
        }
        match &(*r).paging {
            Some(p) => {
                if !data.is_null() {
                    *data = p.as_ptr();
                }
                if !len.is_null() {
                    *len = p.len();
                }
                true
            }
            None => {
                if !data.is_null() {
                    *data = std::ptr::null();
                }
                if !len.is_null() {
                    *len = 0;
                }
                false
            }
        }
    })
}

unsafe fn cell<'a>(r: *const CqlResult, row: usize, col: usize) -> Result<&'a Val, c_int> {
    if r.is_null() {
        return Err(EINVAL);
    }
    let r: &'a CqlResult = &*r;
    r.rows.get(row).and_then(|cols| cols.get(col)).ok_or(ERANGE)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_is_null(r: *const CqlResult, row: usize, col: usize) -> bool {
    guard_or(false, || matches!(cell(r, row, col), Ok(Val::Null)))
}

/// Runs a getter: ERANGE/ENULL/ETYPE, or OK after `f` stored the value.
unsafe fn get(r: *const CqlResult, row: usize, col: usize, f: impl FnOnce(&Val) -> bool) -> c_int {
    guard_or(EINTERNAL, || match cell(r, row, col) {
        Err(code) => code,
        Ok(Val::Null) => ENULL,
        Ok(v) => {
            if f(v) {
                OK
            } else {
                ETYPE
            }
        }
    })
}

unsafe fn put<T>(p: *mut T, x: T) {
    if !p.is_null() {
        *p = x;
    }
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_text(
    r: *const CqlResult,
    row: usize,
    col: usize,
    s: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    get(r, row, col, |v| match v {
        Val::Text(b) => {
            put(s, b.as_ptr() as *const c_char);
            put(len, b.len() - 1);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_bigint(r: *const CqlResult, row: usize, col: usize, x: *mut i64) -> c_int {
    get(r, row, col, |v| match v {
        Val::BigInt(n) => {
            put(x, *n);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_int(r: *const CqlResult, row: usize, col: usize, x: *mut i32) -> c_int {
    get(r, row, col, |v| match v {
        Val::Int(n) => {
            put(x, *n);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_smallint(r: *const CqlResult, row: usize, col: usize, x: *mut i16) -> c_int {
    get(r, row, col, |v| match v {
        Val::SmallInt(n) => {
            put(x, *n);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_bool(r: *const CqlResult, row: usize, col: usize, x: *mut bool) -> c_int {
    get(r, row, col, |v| match v {
        Val::Bool(b) => {
            put(x, *b);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_blob(
    r: *const CqlResult,
    row: usize,
    col: usize,
    p: *mut *const u8,
    len: *mut usize,
) -> c_int {
    get(r, row, col, |v| match v {
        Val::Blob(b) => {
            put(p, b.as_ptr());
            put(len, b.len());
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_timestamp(r: *const CqlResult, row: usize, col: usize, ms: *mut i64) -> c_int {
    get(r, row, col, |v| match v {
        Val::Timestamp(t) => {
            put(ms, *t);
            true
        }
        _ => false,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_list_len(r: *const CqlResult, row: usize, col: usize, n: *mut usize) -> c_int {
    guard_or(EINTERNAL, || match cell(r, row, col) {
        Err(code) => code,
        Ok(Val::Null) => {
            put(n, 0);
            OK
        }
        Ok(Val::TextList(l)) => {
            put(n, l.len());
            OK
        }
        Ok(_) => ETYPE,
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_result_list_text(
    r: *const CqlResult,
    row: usize,
    col: usize,
    k: usize,
    s: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    guard_or(EINTERNAL, || match cell(r, row, col) {
        Err(code) => code,
        Ok(Val::Null) => ERANGE,
        Ok(Val::TextList(l)) => match l.get(k) {
            Some(b) => {
                put(s, b.as_ptr() as *const c_char);
                put(len, b.len() - 1);
                OK
            }
            None => ERANGE,
        },
        Ok(_) => ETYPE,
    })
}

// ---------------------------------------------------------- batches --

/// `chat__cql_batch`.
pub struct CqlBatch {
    batch: Batch,
    values: Vec<Vec<Option<CqlValue>>>,
    cl: c_int,
}

#[no_mangle]
pub extern "C" fn chat__cql_batch_new(kind: c_int, cl: c_int) -> *mut CqlBatch {
    guard_or(std::ptr::null_mut(), || {
        let t = match kind {
            0 => BatchType::Logged,
            1 => BatchType::Unlogged,
            _ => return std::ptr::null_mut(),
        };
        if !(0..=9).contains(&cl) {
            return std::ptr::null_mut();
        }
        Box::into_raw(Box::new(CqlBatch { batch: Batch::new(t), values: Vec::new(), cl }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_batch_free(b: *mut CqlBatch) {
    guard_or((), || {
        if !b.is_null() {
            drop(Box::from_raw(b));
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_batch_add(b: *mut CqlBatch, p: *const CqlPrepared, v: *const CqlValues) -> c_int {
    guard_or(EINTERNAL, || {
        if b.is_null() || p.is_null() {
            return EINVAL;
        }
        let row = match values_row(v) {
            Ok(r) => r,
            Err(f) => return f.code,
        };
        if (*b).values.len() >= u16::MAX as usize {
            return ERANGE;
        }
        (*b).batch.append_statement((*(*p).stmt).clone());
        (*b).values.push(row);
        OK
    })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_batch_len(b: *const CqlBatch) -> usize {
    guard_or(0, || if b.is_null() { 0 } else { (*b).values.len() })
}

// ------------------------------------------------------- executions --

enum Job {
    Execute { stmt: Arc<PreparedStatement>, row: Vec<Option<CqlValue>>, paging: PagingState },
    Query { stmt: Statement },
    Batch { batch: Batch, values: Vec<Vec<Option<CqlValue>>> },
}

async fn run(session: Arc<Session>, job: Job) -> Result<CqlResult, Fail> {
    match job {
        Job::Execute { stmt, row, paging } => {
            let (qr, next) = session
                .execute_single_page(&stmt, row, paging)
                .await
                .map_err(|e| exec_fail(&e))?;
            let state = match next.into_paging_control_flow() {
                std::ops::ControlFlow::Continue(ps) => ps.as_bytes_slice().map(|b| b.to_vec()),
                std::ops::ControlFlow::Break(()) => None,
            };
            convert(qr, state)
        }
        Job::Query { stmt } => {
            let qr = session.query_unpaged(stmt, &[]).await.map_err(|e| exec_fail(&e))?;
            convert(qr, None)
        }
        Job::Batch { batch, values } => {
            let qr = session.batch(&batch, values).await.map_err(|e| exec_fail(&e))?;
            convert(qr, None)
        }
    }
}

type Done = extern "C" fn(*mut c_void, *const CqlError, *mut CqlResult);

/// The C user data pointer, moved to a driver thread; the C side promised
/// (cql.h) that `done` may run there.
struct UserData(*mut c_void);
unsafe impl Send for UserData {}

/// Fires `done` exactly once: from `finish`, or from `drop` if the task
/// died first (a panic, or the runtime shutting down).
struct Completion {
    done: Done,
    user: UserData,
    shared: Arc<Shared>,
    fired: bool,
}

impl Completion {
    fn finish(mut self, r: Result<CqlResult, Fail>) {
        self.fire(r);
    }

    fn fire(&mut self, r: Result<CqlResult, Fail>) {
        if self.fired {
            return;
        }
        self.fired = true;
        match r {
            Ok(res) => {
                let e = ok_error();
                (self.done)(self.user.0, &e, Box::into_raw(Box::new(res)));
            }
            Err(f) => {
                let e = f.to_c();
                (self.done)(self.user.0, &e, std::ptr::null_mut());
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.fire(Err(Fail::new(EINTERNAL, "execution ended without a result")));
        let mut n = self.shared.inflight.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        if *n == 0 {
            self.shared.idle.notify_all();
        }
    }
}

unsafe fn submit(s: *mut CqlSession, job: impl FnOnce(&CqlSession) -> Result<Job, Fail>, done: Option<Done>, user: *mut c_void) -> c_int {
    guard(std::ptr::null_mut(), || {
        let Some(done) = done else { return EINVAL };
        if s.is_null() {
            return EINVAL;
        }
        let sess = &*s;
        let job = match job(sess) {
            Ok(j) => j,
            Err(f) => return f.code,
        };
        let Some(rt) = sess.rt.as_ref() else { return ECLOSED };
        {
            let mut n = sess.shared.inflight.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock close() waits on, so no execution
            // slips in after close() saw zero in flight.
            if sess.shared.closing.load(Ordering::SeqCst) {
                return ECLOSED;
            }
            *n += 1;
        }
        let c = Completion { done, user: UserData(user), shared: sess.shared.clone(), fired: false };
        let session = sess.session.clone();
        rt.spawn(async move {
            let r = run(session, job).await;
            c.finish(r);
        });
        OK
    })
}

/// One blocking execution in flight, from `enter` to drop.
struct Busy<'a>(&'a Shared);

impl<'a> Busy<'a> {
    fn enter(shared: &'a Shared) -> Result<Busy<'a>, Fail> {
        let mut n = shared.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if shared.closing.load(Ordering::SeqCst) {
            return Err(Fail::new(ECLOSED, "session is closing"));
        }
        *n += 1;
        Ok(Busy(shared))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut n = self.0.inflight.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

unsafe fn wait(s: *mut CqlSession, job: impl FnOnce(&CqlSession) -> Result<Job, Fail>, out: *mut *mut CqlResult, err: *mut CqlError) -> c_int {
    guard(err, || {
        let r = (|| -> Result<CqlResult, Fail> {
            if s.is_null() || out.is_null() {
                return Err(Fail::new(EINVAL, "session or out is NULL"));
            }
            *out = std::ptr::null_mut();
            if on_session_thread() {
                return Err(Fail::new(EINVAL, "blocking call from a chat_cql thread"));
            }
            let sess = &*s;
            let job = job(sess)?;
            let rt = sess.rt.as_ref().ok_or_else(|| Fail::new(ECLOSED, "session is closed"))?;
            // Counted in flight like an asynchronous execution, so a close()
            // on another thread waits for it instead of freeing the session
            // under it.
            let _busy = Busy::enter(&sess.shared)?;
            rt.block_on(run(sess.session.clone(), job))
        })();
        match r {
            Ok(res) => {
                *out = Box::into_raw(Box::new(res));
                clear(err);
                OK
            }
            Err(f) => report(err, &f),
        }
    })
}

unsafe fn execute_job(
    p: *const CqlPrepared,
    v: *const CqlValues,
    paging: *const u8,
    paging_len: usize,
) -> Result<Job, Fail> {
    if p.is_null() {
        return Err(Fail::new(EINVAL, "prepared is NULL"));
    }
    let row = values_row(v)?;
    let want = (*p).stmt.get_variable_col_specs().len();
    if row.len() != want {
        return Err(Fail::new(EINVAL, format!("{} values bound, the statement has {want} markers", row.len())));
    }
    let paging = match bytes(paging as *const c_void, paging_len) {
        None => return Err(Fail::new(EINVAL, "paging_state is NULL")),
        Some([]) => PagingState::start(),
        Some(b) => PagingState::new_from_raw_bytes(b),
    };
    Ok(Job::Execute { stmt: (*p).stmt.clone(), row, paging })
}

unsafe fn query_job(sess: &CqlSession, cql: *const c_char, cl: c_int) -> Result<Job, Fail> {
    let text = c_str(cql, "cql")?;
    let c = consistency(cl, sess.default_cl).ok_or_else(|| Fail::new(EINVAL, "unknown consistency"))?;
    let mut stmt = Statement::new(text);
    stmt.set_consistency(c);
    Ok(Job::Query { stmt })
}

unsafe fn batch_job(sess: &CqlSession, b: *const CqlBatch) -> Result<Job, Fail> {
    if b.is_null() {
        return Err(Fail::new(EINVAL, "batch is NULL"));
    }
    let b = &*b;
    if b.values.is_empty() {
        return Err(Fail::new(EINVAL, "batch is empty"));
    }
    let mut batch = b.batch.clone();
    batch.set_consistency(consistency(b.cl, sess.default_cl).unwrap_or(sess.default_cl));
    Ok(Job::Batch { batch, values: b.values.clone() })
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_execute(
    s: *mut CqlSession,
    p: *const CqlPrepared,
    v: *const CqlValues,
    paging: *const u8,
    paging_len: usize,
    done: Option<Done>,
    user: *mut c_void,
) -> c_int {
    submit(s, |_| execute_job(p, v, paging, paging_len), done, user)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_execute_wait(
    s: *mut CqlSession,
    p: *const CqlPrepared,
    v: *const CqlValues,
    paging: *const u8,
    paging_len: usize,
    out: *mut *mut CqlResult,
    err: *mut CqlError,
) -> c_int {
    wait(s, |_| execute_job(p, v, paging, paging_len), out, err)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_query(
    s: *mut CqlSession,
    cql: *const c_char,
    cl: c_int,
    done: Option<Done>,
    user: *mut c_void,
) -> c_int {
    submit(s, |sess| query_job(sess, cql, cl), done, user)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_query_wait(
    s: *mut CqlSession,
    cql: *const c_char,
    cl: c_int,
    out: *mut *mut CqlResult,
    err: *mut CqlError,
) -> c_int {
    wait(s, |sess| query_job(sess, cql, cl), out, err)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_batch_execute(
    s: *mut CqlSession,
    b: *const CqlBatch,
    done: Option<Done>,
    user: *mut c_void,
) -> c_int {
    submit(s, |sess| batch_job(sess, b), done, user)
}

#[no_mangle]
pub unsafe extern "C" fn chat__cql_batch_execute_wait(
    s: *mut CqlSession,
    b: *const CqlBatch,
    out: *mut *mut CqlResult,
    err: *mut CqlError,
) -> c_int {
    wait(s, |sess| batch_job(sess, b), out, err)
}
