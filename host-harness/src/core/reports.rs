//! Reports about plugins that are not one operation's result: errors,
//! stalled and hung callbacks, and the observer stream a plugin turns on.

use std::sync::Arc;

use abi_stable::std_types::RSlice;
use plugin_abi::{CallStatus, ErrorKind, ObservationKind, PanicLocation, PluginError, PluginState};
use serde_json::json;

use super::HostCore;
use crate::logger;
use crate::observer::Report;
use crate::plugins::invoke::{
    admit_inline, run_admitted, CallHost, CallInFlight, HungCall, InFlight,
};

impl HostCore {
    /// Reports a stalled callback to observers.
    pub fn report_stall(&self, call: &CallInFlight, busy: std::time::Duration) {
        if self.observers.is_active() {
            let mut r = Report::new(
                ObservationKind::Stall,
                CallStatus::Error,
                Arc::from(call.callback),
                call.plugin.clone(),
            );
            r.detail = Some(crate::observer::Name::Shared(Arc::from(
                call.detail.as_str(),
            )));
            r.set_message(Some(call.thread.clone()));
            r.duration_ns = busy.as_nanos() as u64;
            self.observers.report(r);
        }
    }

    /// One pass of the watchdog over the callbacks in flight: a call busy
    /// longer than `stall` is logged and reported once; one busy past its
    /// own deadline is reported as hung and its plugin's circuit opens
    /// until it returns. The only place an in-line service call's overrun
    /// is found.
    pub fn watchdog_pass(&self, stall: std::time::Duration) {
        for call in self.inflight.take_stalled(stall) {
            let busy = call.started.elapsed();
            logger::warn(
                "watchdog",
                "plugin callback stalled",
                json!({"plugin": &*call.plugin, "callback": call.callback, "detail": call.detail,
                       "thread": call.thread, "busy_ms": busy.as_millis() as u64,
                       "threshold_ms": stall.as_millis() as u64}),
            );
            self.report_stall(&call, busy);
        }
        for hung in self.inflight.take_hung() {
            self.report_hung(&hung);
        }
    }

    /// A call was found hung past its deadline (by its caller's timeout or
    /// the watchdog): logged and reported; its circuit is already open.
    pub fn report_hung(&self, hung: &HungCall) {
        let call = &hung.call;
        logger::error(
            "watchdog",
            "plugin callback hung",
            json!({"plugin": &*call.plugin, "callback": call.callback, "detail": call.detail,
                   "reason": hung.reason, "circuit_opened": hung.breaker_told}),
        );
        self.report_error("stall", &call.plugin, &hung.reason);
    }

    /// Reports an error to observers.
    pub fn report_error(&self, place: &str, plugin: &str, message: &str) {
        self.report_plugin_error(place, plugin, message, None);
    }

    /// Reports an error to observers with the location of the plugin panic
    /// behind it (a plugin error's `panic` field), passed on as a value.
    pub fn report_plugin_error(
        &self,
        place: &str,
        plugin: &str,
        message: &str,
        panic: Option<&PanicLocation>,
    ) {
        if self.observers.is_active() {
            let mut r = Report::new(
                ObservationKind::Error,
                CallStatus::Error,
                Arc::from(place),
                Arc::from(plugin),
            );
            r.set_message(Some(message.to_owned()));
            r.set_panic(panic.cloned());
            self.observers.report(r);
        }
    }

    /// Turns the observer stream on or off for a plugin instance.
    pub fn set_observer(
        self: &Arc<Self>,
        instance_id: u64,
        enabled: bool,
    ) -> Result<(), PluginError> {
        if !enabled {
            self.observers.remove(instance_id);
            return Ok(());
        }
        let instance = self.live_instance(instance_id)?;
        let core = Arc::downgrade(self);
        let inst = instance.clone();
        self.observers.add(
            instance_id,
            &instance.name,
            Arc::new(move |batch| {
                let Some(core) = core.upgrade() else { return };
                // An open circuit drops the batch (counted as refused).
                let Ok(admission) = admit_inline(&inst) else {
                    return;
                };
                let result = {
                    let limit = core.config.callback_timeout();
                    let _guard = core
                        .inflight
                        .enter(&inst, "on_observations", "", limit, None);
                    run_admitted(&inst, admission, limit, |inst| {
                        inst.plugin.on_observations(RSlice::from_slice(batch))
                    })
                };
                if let Err(e) = result {
                    let msg = format!("on_observations failed: {e}");
                    logger::warn(
                        "observer",
                        "observer failed",
                        json!({"plugin": &*inst.name, "error": e.to_string()}),
                    );
                    if e.kind == ErrorKind::Panicked
                        && inst.set_state(PluginState::Error, Some(msg.clone()))
                    {
                        core.plugin_state_changed(&inst, "error");
                    }
                }
            }),
        );
        Ok(())
    }
}

/// Plugin calls sent by the core are recorded in its in-flight set, run on
/// its runtime's blocking pool, and reported as hung through
/// [`HostCore::report_hung`].
impl CallHost for HostCore {
    fn inflight(&self) -> &Arc<InFlight> {
        &self.inflight
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    fn report_hung(&self, hung: &HungCall) {
        HostCore::report_hung(self, hung);
    }
}
