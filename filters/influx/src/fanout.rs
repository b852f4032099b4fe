//! Carrying a plan out: the router's cluster header, a relay or a fan-out of
//! `dispatch_http_call`s, the replay queue for a write's failed parts, and the answer written
//! once every call answered.

use geomesh_core::metrics::PipelineStat;

use super::*;

impl InfluxHttp {
    pub(crate) fn reply(&mut self, r: &Reply, routed: &str) {
        self.reply_with(r, routed, "");
    }

    /// [`Self::reply`] naming the clusters the replay queue stored a part for (`queued`).
    pub(crate) fn reply_with(&mut self, r: &Reply, routed: &str, queued: &str) {
        let mut headers = vec![("content-type", r.content_type), (WRITTEN_BY_HEADER, "1")];
        if !queued.is_empty() {
            headers.push((QUEUED_HEADER, queued));
        }
        if !routed.is_empty() {
            headers.push((ROUTED_TO_HEADER, routed));
        }
        if r.status >= 400 {
            headers.push(("x-influxdb-error", "geomesh"));
        }
        let body = if r.body.is_empty() {
            None
        } else {
            Some(r.body.as_slice())
        };
        self.send_http_response(u32::from(r.status), headers, body);
    }

    /// Carries a plan out; the action for the current callback. `body`: the request's whole
    /// body once read (a one-shard plan then relays it: Envoy no longer lets a filter change
    /// the request headers, hence the route, after they went on).
    pub(crate) fn carry_out(&mut self, state: &State, plan: Plan, body: Option<&[u8]>) -> Action {
        match plan {
            Plan::Forward(c) if body.is_some() => {
                let name = state.table.cluster_name(c).to_owned();
                self.count(STAT_FORWARD);
                let call = Call {
                    cluster: c,
                    path: String::from_utf8_lossy(&self.head.path).into_owned(),
                    content_type: "",
                    body: body.map(<[u8]>::to_vec).unwrap_or_default(),
                };
                let mut f = Fanout {
                    merge: None,
                    relayed: Vec::new(),
                    answers: vec![None],
                    tokens: HashMap::new(),
                    clusters: name,
                    parts: Vec::new(),
                    queued: Vec::new(),
                    queue_tokens: HashMap::new(),
                    relay_write: None,
                    call_clusters: Vec::new(),
                    sent_at: self.get_current_time(),
                };
                match self.dispatch(state, &call, true) {
                    Some(token) => {
                        f.tokens.insert(token, 0);
                    }
                    None => {
                        f.answers = vec![Some(Answer {
                            status: None,
                            body: Vec::new(),
                        })]
                    }
                }
                f.call_clusters = vec![c];
                if state.settings.replay_cluster.is_some() && is_write(&self.head.path) {
                    f.relay_write = Some((c, call.body, self.now));
                }
                self.fanout = Some(f);
                self.finish_if_done();
                Action::Pause
            }
            Plan::Forward(c) => {
                self.count_upstream(c);
                let name = state.table.cluster_name(c).to_owned();
                self.set_http_request_header(&state.settings.cluster_header, Some(&name));
                if let Err(status) =
                    proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None)
                {
                    log::error!("geomesh influx: Envoy has no clear_route_cache ({status:?}): the route may ignore the cluster header");
                }
                self.count(STAT_FORWARD);
                self.routed_to = Some(name);
                Action::Continue
            }
            Plan::Reply(r) => {
                self.count(STAT_REPLY);
                self.count_pipeline(PipelineStat::Local);
                self.reply(&r, "");
                Action::Pause
            }
            Plan::Fanout { calls, merge } => {
                self.count(STAT_FANOUT);
                self.count_pipeline(
                    if matches!(merge, Merge::Query(_))
                        && calls.len() >= state.table.active_clusters().len()
                    {
                        PipelineStat::Broadcast
                    } else {
                        PipelineStat::Split
                    },
                );
                let names: Vec<&str> = calls
                    .iter()
                    .map(|c| state.table.cluster_name(c.cluster))
                    .collect();
                let mut f = Fanout {
                    merge: Some(merge),
                    relayed: Vec::new(),
                    answers: vec![None; calls.len()],
                    tokens: HashMap::new(),
                    clusters: names.join(","),
                    parts: Vec::new(),
                    queued: Vec::new(),
                    queue_tokens: HashMap::new(),
                    relay_write: None,
                    call_clusters: Vec::new(),
                    sent_at: self.get_current_time(),
                };
                f.call_clusters = calls.iter().map(|c| c.cluster).collect();
                let mut done = vec![false; calls.len()];
                for (i, call) in calls.iter().enumerate() {
                    match self.dispatch(state, call, false) {
                        Some(token) => {
                            f.tokens.insert(token, i);
                        }
                        None => {
                            if let Some(d) = done.get_mut(i) {
                                *d = true;
                            }
                            if let Some(a) = f.answers.get_mut(i) {
                                *a = Some(Answer {
                                    status: None,
                                    body: Vec::new(),
                                });
                            }
                        }
                    }
                }
                if matches!(f.merge, Some(Merge::Write(_)))
                    && state.settings.replay_cluster.is_some()
                {
                    f.parts = calls
                        .into_iter()
                        .map(|c| {
                            (
                                state.table.cluster_name(c.cluster).to_owned(),
                                c.path,
                                c.body,
                            )
                        })
                        .collect();
                }
                self.fanout = Some(f);
                self.finish_if_done();
                Action::Pause
            }
        }
    }

    /// Hands the failed parts of a split write to the replay queue; true while its answers are
    /// awaited.
    pub(crate) fn queue_failed_parts(&mut self) -> bool {
        let Some(state) = self.state.clone() else {
            return false;
        };
        let Some(replay) = state.settings.replay_cluster.as_deref() else {
            return false;
        };
        let Some(f) = self.fanout.as_mut() else {
            return false;
        };
        if f.parts.is_empty() || !f.queued.is_empty() {
            return !f.queue_tokens.is_empty();
        }
        let failed: Vec<usize> = f
            .answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_some_and(part_failed))
            .map(|(i, _)| i)
            .collect();
        if failed.is_empty() {
            return false;
        }
        f.queued = vec![Queued::No; f.parts.len()];
        let parts = std::mem::take(&mut f.parts);
        let mut tokens = HashMap::new();
        let mut queued = std::mem::take(&mut f.queued);
        for i in failed {
            let Some((cluster, path, body)) = parts.get(i) else {
                continue;
            };
            let qpath = queue_path(cluster, path);
            let headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &qpath),
                (":authority", "geomesh-agent"),
                ("content-type", geomesh_influx::plan::LINE_PROTOCOL),
            ];
            match self.dispatch_http_call(replay, headers, Some(body), vec![], state.timeout) {
                Ok(token) => {
                    tokens.insert(token, i);
                }
                Err(status) => {
                    log::warn!("geomesh influx: cannot call replay cluster {replay}: {status:?}");
                    if let Some(q) = queued.get_mut(i) {
                        *q = Queued::Unavailable(format!("cannot call cluster {replay}"));
                    }
                }
            }
        }
        let waiting = !tokens.is_empty();
        if let Some(f) = self.fanout.as_mut() {
            f.queued = queued;
            f.queue_tokens = tokens;
        }
        waiting
    }

    /// Sends a call; `relay`: the client's own method, content type, encoding and accept.
    pub(crate) fn dispatch(&self, state: &State, call: &Call, relay: bool) -> Option<u32> {
        let cluster = state.table.cluster_name(call.cluster);
        let method = if relay {
            std::str::from_utf8(&self.head.method).unwrap_or("POST")
        } else {
            "POST"
        };
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", method),
            (":path", &call.path),
            (":authority", &self.head.authority),
        ];
        if relay {
            if let Some(v) = &self.head.content_type {
                headers.push(("content-type", v));
            }
            if let Some(v) = &self.head.content_encoding {
                headers.push(("content-encoding", v));
            }
            if self.head.csv {
                headers.push(("accept", "application/csv"));
            }
        } else {
            headers.push(("content-type", call.content_type));
            headers.push(("accept", "application/json"));
        }
        if let Some(a) = &self.head.authorization {
            headers.push(("authorization", a));
        }
        match self.dispatch_http_call(cluster, headers, Some(&call.body), vec![], state.timeout) {
            Ok(token) => {
                self.count_upstream(call.cluster);
                Some(token)
            }
            Err(status) => {
                log::warn!("geomesh influx: cannot call cluster {cluster}: {status:?}");
                None
            }
        }
    }

    /// A relayed one-shard write whose shard failed becomes a one-part split write, so that its
    /// part goes to the replay queue like a split write's.
    pub(crate) fn relay_write_failed(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(f) = self.fanout.as_mut() else {
            return;
        };
        if !f
            .answers
            .first()
            .and_then(Option::as_ref)
            .is_some_and(part_failed)
        {
            return;
        }
        let Some((cluster, body, now)) = f.relay_write.take() else {
            return;
        };
        let (_, query) = geomesh_influx::params::split_path(&self.head.path);
        let params = geomesh_influx::params::Params::parse(query);
        let name = state.table.cluster_name(cluster).to_owned();
        if let Some((call, merge)) = forwarded_as_part(
            &state.settings,
            &params,
            cluster,
            &name,
            &body,
            self.head.gzip,
            now,
        ) {
            f.merge = Some(Merge::Write(merge));
            f.parts = vec![(name, call.path, call.body)];
        }
    }

    /// Writes the merged answer once every call answered.
    pub(crate) fn finish_if_done(&mut self) {
        let Some(f) = &self.fanout else { return };
        if f.answers.iter().any(Option::is_none) {
            return;
        }
        if f.relay_write.is_some() {
            self.relay_write_failed();
        }
        if self.queue_failed_parts() {
            return;
        }
        let Some(f) = &self.fanout else { return };
        let answers: Vec<Answer> = f.answers.iter().flatten().cloned().collect();
        let failed = answers
            .iter()
            .filter(|a| a.status.is_none_or(|s| s >= 500))
            .count();
        let routed = f.clusters.clone();
        for _ in 0..failed {
            self.count(STAT_SHARD_FAILED);
        }
        let Some(f) = self.fanout.take() else { return };
        match (&f.merge, answers.first()) {
            (Some(Merge::Write(w)), _) if !f.queued.is_empty() => {
                let stored: Vec<&str> = f
                    .queued
                    .iter()
                    .zip(w.parts.iter())
                    .filter(|(q, _)| **q == Queued::Stored)
                    .map(|(_, p)| p.cluster.as_str())
                    .collect();
                let refused = f
                    .queued
                    .iter()
                    .filter(|q| matches!(q, Queued::Full(_) | Queued::Unavailable(_)))
                    .count();
                for _ in 0..stored.len() {
                    self.count(STAT_QUEUED);
                }
                for _ in 0..refused {
                    self.count(STAT_QUEUE_REFUSED);
                }
                let reply = merge_write_queued(w, &answers, &f.queued);
                self.reply_with(&reply, &routed, &stored.join(","));
            }
            (Some(merge), _) => {
                let reply = geomesh_influx::merge(merge, &answers);
                self.reply(&reply, &routed);
            }
            (
                None,
                Some(Answer {
                    status: Some(status),
                    body,
                }),
            ) => {
                let mut headers: Vec<(&str, &str)> = f
                    .relayed
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                headers.push((ROUTED_TO_HEADER, &routed));
                let body = if body.is_empty() {
                    None
                } else {
                    Some(body.as_slice())
                };
                self.send_http_response(u32::from(*status), headers, body);
            }
            (None, _) => {
                let reply = Reply::error(
                    503,
                    &format!("geomesh: cluster {routed} did not answer (connection failure, timeout or answer too large)"),
                );
                self.reply(&reply, &routed);
            }
        }
    }
}
