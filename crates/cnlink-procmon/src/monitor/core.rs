//! What the consumer does with each batch: the process table, the selection, the filters, the counters.

use std::collections::VecDeque;

use cnlink::proc::{Event, ProcItem};

use super::MonitorItem;
use crate::filter::{FilterContext, FilterList};
use crate::loss::{LossCounts, LostEvents};
use crate::pipeline::{Batch, Prefetch};
use crate::procfs::{Prefetched, ProcSource, Wants};
use crate::record::{RecorderTx, Recording};
use crate::select::{EventKind, Selection};
use crate::table::record::KernelEvent;
use crate::table::ProcessTable;

/// Counters kept by the consumer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    pub(crate) received: [u64; EventKind::COUNT],
    pub(crate) shown: [u64; EventKind::COUNT],
    pub(crate) own: u64,
    pub(crate) acks: u64,
    pub(crate) overruns: u64,
    pub(crate) losses: LossCounts,
}

/// The consumer's state.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) table: ProcessTable,
    pub(crate) selection: Selection,
    pub(crate) filters: FilterList,
    /// Events of this process (the monitor's own threads) are counted, not handled.
    pub(crate) own_pid: Option<i32>,
    pub(crate) counts: Counts,
}

impl Core {
    /// Handles a batch: every loss (at its place), every event through the table and the filters; what is
    /// shown goes to `out`. `/proc` is read through `source` (and the batch's prefetched observations), each
    /// answer shown to `recorder`.
    pub(crate) fn handle(
        &mut self,
        batch: &mut Batch,
        source: &mut dyn ProcSource,
        mut recorder: Option<&mut RecorderTx>,
        out: &mut VecDeque<MonitorItem>,
    ) {
        let Batch { input, prefetched, .. } = batch;
        let mut losses = input.losses.iter().peekable();
        let mut pre = prefetched.drain(..).peekable();
        for (i, item) in input.items.iter().enumerate() {
            while let Some((_, l)) = losses.next_if(|(at, _)| *at <= i) {
                self.lost(l, out);
            }
            match item {
                ProcItem::Event(ev) => {
                    while pre.next_if(|(at, _)| *at < i).is_some() {}
                    let p = pre.next_if(|(at, _)| *at == i).map(|(_, p)| p);
                    self.event(ev, p, source, recorder.as_deref_mut(), out);
                }
                ProcItem::Ack { .. } => self.counts.acks += 1,
                ProcItem::Overrun => self.counts.overruns += 1,
                _ => {}
            }
        }
        for (_, l) in losses {
            self.lost(l, out);
        }
    }

    fn lost(&mut self, l: &LostEvents, out: &mut VecDeque<MonitorItem>) {
        self.counts.losses.add(l);
        self.table.note_loss();
        out.push_back(MonitorItem::Lost(*l));
    }

    fn event(
        &mut self,
        ev: &Event,
        pre: Option<Prefetch>,
        source: &mut dyn ProcSource,
        recorder: Option<&mut RecorderTx>,
        out: &mut VecDeque<MonitorItem>,
    ) {
        if let Some(own) = self.own_pid {
            if ev.data.subject().is_some_and(|(_, tgid)| tgid == own) {
                self.counts.own += 1;
                return;
            }
        }
        let kind = EventKind::of(&ev.data);
        self.counts.received[kind.index()] += 1;
        let (observation, wants) = match pre {
            Some(p) => (Some(p.observation), p.wants),
            None => (None, Wants::STAT),
        };
        let mut prefetched = Prefetched { observation, wants, inner: source };
        let mut recording;
        let src: &mut dyn ProcSource = match recorder {
            Some(tx) => {
                recording = Recording { inner: &mut prefetched, tx };
                &mut recording
            }
            None => &mut prefetched,
        };
        let rec = self.table.handle(&KernelEvent::from(ev), src);
        let shown = self.selection.admits(&ev.data);
        let pass = self.filters.run(&rec, shown, &mut FilterContext { table: &self.table, source: src });
        if pass {
            self.counts.shown[kind.index()] += 1;
            out.push_back(MonitorItem::Record(rec));
        }
    }
}
