//! Mitigation statements: mitigation actions, detect mitigation tasks and their executions.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{Conditions, enum_column, exists, fetch, strings_column, time_key};
use crate::defender::{
    DetectMitigationTask, MitigationAction, MitigationActionUpdate, MitigationExecution,
    MitigationExecutionFilter, MitigationExecutionUpdate, MitigationTaskStatistics, MitigationTaskStatus,
    MitigationTaskUpdate, NewDetectMitigationTask, NewMitigationAction, TaskStart,
};
use crate::error::{ResourceKind, Result, StoreError};
use crate::page::Page;

// ---------------------------------------------------------------------------------------------
// Mitigation actions

const ACTION_COLUMNS: &str =
    "name, action_id, action_type, params, role_arn, created_at_ms, last_modified_ms";

fn action_from_row(row: &Row<'_>) -> rusqlite::Result<MitigationAction> {
    Ok(MitigationAction {
        name: row.get(0)?,
        id: row.get(1)?,
        action_type: row.get(2)?,
        params: row.get(3)?,
        role_arn: row.get(4)?,
        created_at_ms: row.get(5)?,
        last_modified_ms: row.get(6)?,
    })
}

pub(crate) fn describe_action(conn: &Connection, name: &str) -> Result<MitigationAction> {
    conn.prepare_cached(&format!("SELECT {ACTION_COLUMNS} FROM mitigation_actions WHERE name = ?1"))?
        .query_row([name], action_from_row)
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::MitigationAction, name))
}

pub(crate) fn create_action(
    conn: &Connection,
    action: &NewMitigationAction,
    id: &str,
    now_ms: i64,
) -> Result<MitigationAction> {
    if exists(describe_action(conn, &action.name))? {
        return Err(StoreError::already_exists(ResourceKind::MitigationAction, &action.name));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO mitigation_actions ({ACTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
    ))?
    .execute(params![action.name, id, action.action_type, action.params, action.role_arn, now_ms])?;
    describe_action(conn, &action.name)
}

pub(crate) fn update_action(
    conn: &Connection,
    name: &str,
    update: &MitigationActionUpdate,
    now_ms: i64,
) -> Result<MitigationAction> {
    let changed = conn
        .prepare_cached(
            "UPDATE mitigation_actions
             SET action_type = coalesce(?2, action_type), params = coalesce(?3, params),
                 role_arn = coalesce(?4, role_arn), last_modified_ms = ?5
             WHERE name = ?1",
        )?
        .execute(params![name, update.action_type, update.params, update.role_arn, now_ms])?;
    if changed == 0 {
        return Err(StoreError::not_found(ResourceKind::MitigationAction, name));
    }
    describe_action(conn, name)
}

pub(crate) fn delete_action(conn: &Connection, name: &str) -> Result<()> {
    match conn.prepare_cached("DELETE FROM mitigation_actions WHERE name = ?1")?.execute([name])? {
        0 => Err(StoreError::not_found(ResourceKind::MitigationAction, name)),
        _ => Ok(()),
    }
}

pub(crate) fn list_actions(
    conn: &Connection,
    action_type: Option<&str>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<MitigationAction>> {
    let mut conditions = Conditions::default();
    conditions.equal("action_type", action_type.map(str::to_owned));
    conditions.push("name > ?", [Value::Text(cursor.unwrap_or_default())]);
    let rows = conditions.query(
        conn,
        &format!("{ACTION_COLUMNS} FROM mitigation_actions"),
        "ORDER BY name LIMIT ?",
        [Value::Integer(fetch(limit))],
        action_from_row,
    )?;
    Ok(Page::from_rows(rows, limit, |a| a.name.clone()))
}

// ---------------------------------------------------------------------------------------------
// Detect mitigation tasks

const TASK_COLUMNS: &str = "task_id, target, actions, violation_start_ms, violation_end_ms, \
                            include_only_active_violations, include_suppressed_alerts, client_request_token, \
                            status, started_at_ms, ended_at_ms, actions_executed, actions_skipped, actions_failed";

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<DetectMitigationTask> {
    Ok(DetectMitigationTask {
        task_id: row.get(0)?,
        target: row.get(1)?,
        actions: strings_column(row, 2)?,
        violation_start_ms: row.get(3)?,
        violation_end_ms: row.get(4)?,
        include_only_active_violations: row.get(5)?,
        include_suppressed_alerts: row.get(6)?,
        client_request_token: row.get(7)?,
        status: enum_column(row, 8)?,
        started_at_ms: row.get(9)?,
        ended_at_ms: row.get(10)?,
        statistics: MitigationTaskStatistics {
            actions_executed: row.get(11)?,
            actions_skipped: row.get(12)?,
            actions_failed: row.get(13)?,
        },
    })
}

fn find_task(conn: &Connection, task_id: &str) -> Result<Option<DetectMitigationTask>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM detect_mitigation_tasks WHERE task_id = ?1"))?
        .query_row([task_id], task_from_row)
        .optional()?)
}

pub(crate) fn describe_task(conn: &Connection, task_id: &str) -> Result<DetectMitigationTask> {
    find_task(conn, task_id)?
        .ok_or_else(|| StoreError::not_found(ResourceKind::DetectMitigationTask, task_id))
}

/// Whether `stored` is what `request` would have created: the same call made again.
fn same_request(stored: &DetectMitigationTask, request: &NewDetectMitigationTask) -> bool {
    stored.client_request_token == request.client_request_token
        && stored.target == request.target
        && stored.actions == request.actions
        && stored.violation_start_ms == request.violation_start_ms
        && stored.violation_end_ms == request.violation_end_ms
        && stored.include_only_active_violations == request.include_only_active_violations
        && stored.include_suppressed_alerts == request.include_suppressed_alerts
}

pub(crate) fn start_task(
    conn: &Connection,
    task: &NewDetectMitigationTask,
    actions_json: &str,
    now_ms: i64,
) -> Result<TaskStart> {
    if let Some(stored) = find_task(conn, &task.task_id)? {
        if same_request(&stored, task) {
            return Ok(TaskStart { task: stored, created: false });
        }
        return Err(StoreError::already_exists(ResourceKind::DetectMitigationTask, &task.task_id));
    }
    let token_holder: Option<String> = conn
        .prepare_cached("SELECT task_id FROM detect_mitigation_tasks WHERE client_request_token = ?1")?
        .query_row([&task.client_request_token], |row| row.get(0))
        .optional()?;
    if let Some(holder) = token_holder {
        return Err(StoreError::invalid(format!(
            "client request token {} was already used by task {holder}",
            task.client_request_token
        )));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO detect_mitigation_tasks ({TASK_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, 0, 0, 0)"
    ))?
    .execute(params![
        task.task_id,
        task.target,
        actions_json,
        task.violation_start_ms,
        task.violation_end_ms,
        task.include_only_active_violations,
        task.include_suppressed_alerts,
        task.client_request_token,
        MitigationTaskStatus::InProgress.as_str(),
        now_ms,
    ])?;
    Ok(TaskStart { task: describe_task(conn, &task.task_id)?, created: true })
}

pub(crate) fn update_task(
    conn: &Connection,
    task_id: &str,
    update: &MitigationTaskUpdate,
) -> Result<DetectMitigationTask> {
    let current = describe_task(conn, task_id)?;
    if current.status != MitigationTaskStatus::InProgress && update.status != current.status {
        return Err(StoreError::InvalidState(format!(
            "detect mitigation task {task_id} has ended ({}) and cannot become {}",
            current.status, update.status
        )));
    }
    let stats = update.statistics;
    conn.prepare_cached(
        "UPDATE detect_mitigation_tasks
         SET status = ?2, ended_at_ms = coalesce(?3, ended_at_ms),
             actions_executed = ?4, actions_skipped = ?5, actions_failed = ?6
         WHERE task_id = ?1",
    )?
    .execute(params![
        task_id,
        update.status.as_str(),
        update.ended_at_ms,
        stats.actions_executed,
        stats.actions_skipped,
        stats.actions_failed,
    ])?;
    describe_task(conn, task_id)
}

pub(crate) fn list_tasks(
    conn: &Connection,
    start_ms: i64,
    end_ms: i64,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<DetectMitigationTask>> {
    // The key is `started_at_ms:task_id`; task ids have no ':'.
    let (after_ms, after_id) = match cursor {
        None => (i64::MIN, String::new()),
        Some(key) => key
            .split_once(':')
            .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
            .ok_or_else(|| StoreError::invalid("malformed next_token"))?,
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM detect_mitigation_tasks
         WHERE started_at_ms >= ?1 AND started_at_ms < ?2 AND (started_at_ms, task_id) > (?3, ?4)
         ORDER BY started_at_ms, task_id LIMIT ?5"
    ))?;
    let rows = stmt
        .query_map(params![start_ms, end_ms, after_ms, after_id, fetch(limit)], task_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, limit, |t| format!("{}:{}", t.started_at_ms, t.task_id)))
}

// ---------------------------------------------------------------------------------------------
// Executions

const EXECUTION_COLUMNS: &str = "t.task_id, e.violation_id, e.action_name, e.thing, e.status, e.error_code, \
                                 e.message, e.started_at_ms, e.ended_at_ms";

fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<MitigationExecution> {
    Ok(MitigationExecution {
        task_id: row.get(0)?,
        violation_id: row.get(1)?,
        action_name: row.get(2)?,
        thing: row.get(3)?,
        status: enum_column(row, 4)?,
        error_code: row.get(5)?,
        message: row.get(6)?,
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
    })
}

fn task_key(conn: &Connection, task_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM detect_mitigation_tasks WHERE task_id = ?1")?
        .query_row([task_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(ResourceKind::DetectMitigationTask, task_id))
}

fn execution_name(task_id: &str, violation_id: &str, action_name: &str) -> String {
    format!("{task_id}/{violation_id}/{action_name}")
}

fn describe_execution(
    conn: &Connection,
    task_id: &str,
    violation_id: &str,
    action_name: &str,
) -> Result<MitigationExecution> {
    conn.prepare_cached(&format!(
        "SELECT {EXECUTION_COLUMNS}
         FROM mitigation_executions e JOIN detect_mitigation_tasks t ON t.id = e.task
         WHERE t.task_id = ?1 AND e.violation_id = ?2 AND e.action_name = ?3"
    ))?
    .query_row([task_id, violation_id, action_name], execution_from_row)
    .optional()?
    .ok_or_else(|| {
        StoreError::not_found(
            ResourceKind::MitigationExecution,
            &execution_name(task_id, violation_id, action_name),
        )
    })
}

pub(crate) fn append_execution(conn: &Connection, execution: &MitigationExecution) -> Result<()> {
    let task = task_key(conn, &execution.task_id)?;
    let done = conn
        .prepare_cached(
            "INSERT INTO mitigation_executions
                 (task, violation_id, action_name, thing, status, error_code, message, started_at_ms,
                  ended_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (task, violation_id, action_name) DO NOTHING",
        )?
        .execute(params![
            task,
            execution.violation_id,
            execution.action_name,
            execution.thing,
            execution.status.as_str(),
            execution.error_code,
            execution.message,
            execution.started_at_ms,
            execution.ended_at_ms,
        ])?;
    if done == 0 {
        return Err(StoreError::already_exists(
            ResourceKind::MitigationExecution,
            &execution_name(&execution.task_id, &execution.violation_id, &execution.action_name),
        ));
    }
    Ok(())
}

pub(crate) fn update_execution(
    conn: &Connection,
    task_id: &str,
    violation_id: &str,
    action_name: &str,
    update: &MitigationExecutionUpdate,
) -> Result<MitigationExecution> {
    let task = task_key(conn, task_id)?;
    let changed = conn
        .prepare_cached(
            "UPDATE mitigation_executions
             SET status = ?4, error_code = ?5, message = ?6, ended_at_ms = coalesce(?7, ended_at_ms)
             WHERE task = ?1 AND violation_id = ?2 AND action_name = ?3",
        )?
        .execute(params![
            task,
            violation_id,
            action_name,
            update.status.as_str(),
            update.error_code,
            update.message,
            update.ended_at_ms,
        ])?;
    if changed == 0 {
        return Err(StoreError::not_found(
            ResourceKind::MitigationExecution,
            &execution_name(task_id, violation_id, action_name),
        ));
    }
    describe_execution(conn, task_id, violation_id, action_name)
}

pub(crate) fn list_executions(
    conn: &Connection,
    filter: &MitigationExecutionFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<MitigationExecution>> {
    let mut conditions = Conditions::default();
    conditions.equal("t.task_id", filter.task_id.clone());
    conditions.equal("e.violation_id", filter.violation_id.clone());
    conditions.equal("e.thing", filter.thing.clone());
    if let Some(start_ms) = filter.start_ms {
        conditions.push("e.started_at_ms >= ?", [start_ms.into()]);
    }
    if let Some(end_ms) = filter.end_ms {
        conditions.push("e.started_at_ms < ?", [end_ms.into()]);
    }
    let (after_ms, after_id) = time_key(cursor)?;
    conditions.push("(e.started_at_ms, e.id) > (?, ?)", [after_ms.into(), after_id.into()]);
    let rows = conditions.query(
        conn,
        &format!(
            "{EXECUTION_COLUMNS}, e.id
             FROM mitigation_executions e JOIN detect_mitigation_tasks t ON t.id = e.task"
        ),
        "ORDER BY e.started_at_ms, e.id LIMIT ?",
        [Value::Integer(fetch(limit))],
        |row| Ok((row.get::<_, i64>(9)?, execution_from_row(row)?)),
    )?;
    let page = Page::from_rows(rows, limit, |(id, e)| format!("{}:{id}", e.started_at_ms));
    Ok(page.map(|(_, execution)| execution))
}
