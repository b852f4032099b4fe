//! The Proxy-Wasm callbacks of a request: headers, body, the calls' answers, response
//! headers and the end of the stream (where the request's metrics are recorded).

use super::*;

impl InfluxHttp {
    pub(crate) fn count(&self, name: &'static str) {
        if let Some(stats) = &self.stats {
            stats.record(
                Metric::Event {
                    group: STAT_GROUP,
                    name,
                },
                1,
            );
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl Context for InfluxHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(state) = self.state.clone() else {
            return;
        };
        if let Some(i) = self
            .fanout
            .as_mut()
            .and_then(|f| f.queue_tokens.remove(&token_id))
        {
            let status = self
                .get_http_call_response_header_bytes(":status")
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
            let body = self
                .get_http_call_response_body(0, body_size.min(4096))
                .unwrap_or_default();
            if let Some(q) = self.fanout.as_mut().and_then(|f| f.queued.get_mut(i)) {
                *q = queued_from(status, &body);
            }
            self.finish_if_done();
            return;
        }
        let Some(index) = self
            .fanout
            .as_mut()
            .and_then(|f| f.tokens.remove(&token_id))
        else {
            return;
        };
        let status = self
            .get_http_call_response_header_bytes(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        // No answer, or Envoy's own (a 5xx without InfluxDB's version header: connection
        // failure, reset, timeout): the shard did not answer.
        let from_envoy = status.is_some_and(|s| s >= 500)
            && self
                .get_http_call_response_header_bytes("x-influxdb-version")
                .is_none();
        if status.is_none() || from_envoy {
            if let Some(f) = &self.fanout {
                let waited = self
                    .get_current_time()
                    .duration_since(f.sent_at)
                    .unwrap_or_default();
                // Envoy's deadline, less a margin for the callback's own delay.
                let timed_out = status == Some(504)
                    || waited + Duration::from_millis(50) >= state.timeout;
                if let Some(c) = f.call_clusters.get(index).copied() {
                    self.count_no_answer(c, timed_out);
                }
            }
        }
        let answer = if body_size > state.settings.max_answer_bytes {
            Answer {
                status: None,
                body: Vec::new(),
            }
        } else {
            Answer {
                status,
                body: self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default(),
            }
        };
        let relayed: Vec<(String, String)> =
            if self.fanout.as_ref().is_some_and(|f| f.merge.is_none()) {
                self.get_http_call_response_headers()
                    .into_iter()
                    .filter(|(k, _)| RELAYED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
                    .collect()
            } else {
                Vec::new()
            };
        if let Some(f) = self.fanout.as_mut() {
            f.relayed = relayed;
            if let Some(slot) = f.answers.get_mut(index) {
                *slot = Some(answer);
            }
        }
        self.finish_if_done();
    }
}

impl HttpContext for InfluxHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started = Some(self.get_current_time());
        let Some(state) = self.state.clone() else {
            self.reply(
                &Reply::error(500, "geomesh influx filter: no valid configuration"),
                "",
            );
            return Action::Pause;
        };
        let header = |s: &Self, name: &str| s.get_http_request_header_bytes(name);
        let encoding = header(self, "content-encoding").unwrap_or_default();
        let accept = header(self, "accept").unwrap_or_default();
        let content_type = header(self, "content-type").unwrap_or_default();
        self.head = OwnedHead {
            method: header(self, ":method").unwrap_or_default(),
            path: header(self, ":path").unwrap_or_default(),
            gzip: contains_ignore_case(&encoding, b"gzip"),
            csv: contains_ignore_case(&accept, b"application/csv")
                || contains_ignore_case(&accept, b"text/csv"),
            form: contains_ignore_case(&content_type, b"application/x-www-form-urlencoded"),
            content_length: header(self, "content-length")
                .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()),
            authority: header(self, ":authority")
                .and_then(|v| String::from_utf8(v).ok())
                .unwrap_or_else(|| "influxdb".to_owned()),
            authorization: header(self, "authorization").and_then(|v| String::from_utf8(v).ok()),
            content_type: String::from_utf8(content_type.clone())
                .ok()
                .filter(|v| !v.is_empty()),
            content_encoding: String::from_utf8(encoding.clone())
                .ok()
                .filter(|v| !v.is_empty()),
        };
        self.family = geomesh_influx::request::family(&self.head.path);
        // A client's own cluster header is never trusted.
        self.set_http_request_header(&state.settings.cluster_header, None);
        match on_headers(&state.table, &state.settings, &self.head.view()) {
            AtHeaders::Plan(plan) => self.carry_out(&state, plan, None),
            AtHeaders::NeedBody if end_of_stream => {
                let plan = on_body(
                    &state.table,
                    &state.settings,
                    &self.head.view(),
                    b"",
                    self.now_ns(),
                );
                self.carry_out(&state, plan, None)
            }
            // Headers go on to the buffer filter that must follow this one (it holds them until
            // the body is whole, so the router picks its route after the body callback set the
            // cluster header); pausing here would stop the body callbacks too (Envoy stops all
            // iteration when a Wasm filter pauses at the headers).
            AtHeaders::NeedBody => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        if self.routed_to.is_some() {
            return Action::Continue;
        }
        if self.fanout.is_some() {
            return Action::Pause;
        }
        if body_size > state.settings.max_body_bytes {
            self.count(STAT_REPLY);
            self.reply(
                &Reply::error(
                    413,
                    &format!(
                        "{} {} bytes",
                        geomesh_influx::replies::BODY_TOO_LARGE,
                        state.settings.max_body_bytes
                    ),
                ),
                "",
            );
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.now = self.now_ns();
        let plan = on_body(
            &state.table,
            &state.settings,
            &self.head.view(),
            &body,
            self.now,
        );
        self.carry_out(&state, plan, Some(&body))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(c) = &self.routed_to {
            self.set_http_response_header(ROUTED_TO_HEADER, Some(c));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.record_request();
    }
}
