//! Writing to the user: events rendered into one buffer, written once per loop turn.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use crate::event::Event;
use crate::render;

#[derive(Debug)]
pub struct Stdout {
    file: ManuallyDrop<File>,
    buf: Vec<u8>,
    json: bool,
    /// Show menu prompts (a person is typing, human output).
    prompts: bool,
    /// The question awaiting an answer, re-shown after notifications.
    prompt: Option<&'static str>,
    prompt_visible: bool,
    /// stdout is gone (closed pipe); nothing more is written.
    pub closed: bool,
}

impl Stdout {
    pub fn new(json: bool, prompts: bool) -> Stdout {
        Stdout {
            // SAFETY: fd 1 stays open for the life of the process; never closed here.
            file: ManuallyDrop::new(unsafe { File::from_raw_fd(1) }),
            buf: Vec::with_capacity(64 * 1024),
            json,
            prompts: prompts && !json,
            prompt: None,
            prompt_visible: false,
            closed: false,
        }
    }

    fn end_prompt_line(&mut self) {
        if self.prompt_visible {
            self.buf.push(b'\n');
            self.prompt_visible = false;
        }
    }

    pub fn event(&mut self, e: &Event) {
        if self.closed {
            return;
        }
        self.end_prompt_line();
        if self.json {
            render::json(e, &mut self.buf);
        } else {
            render::human(e, &mut self.buf);
        }
    }

    /// A line of text for the user (help, hints).
    pub fn say(&mut self, text: &str) {
        if self.closed {
            return;
        }
        self.end_prompt_line();
        if self.json {
            let v = serde_json::json!({"event": "info", "detail": text});
            let _ = serde_json::to_writer(&mut self.buf, &v);
            self.buf.push(b'\n');
        } else {
            self.buf
                .extend_from_slice(crate::sanitize::for_terminal_lines(text).as_bytes());
            self.buf.push(b'\n');
        }
    }

    /// Raw text shown to a person only (the menu).
    pub fn banner(&mut self, text: &str) {
        if self.prompts && !self.closed {
            self.end_prompt_line();
            self.buf.extend_from_slice(text.as_bytes());
        }
    }

    /// Sets the question awaiting an answer; it is shown on the next flush.
    pub fn set_prompt(&mut self, prompt: Option<&'static str>) {
        if self.prompt != prompt {
            self.end_prompt_line();
        }
        self.prompt = prompt;
    }

    /// The user answered: the cursor is on a fresh line again.
    pub fn answered(&mut self) {
        self.prompt_visible = false;
    }

    /// Writes everything buffered. A closed stdout marks the output closed.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            self.buf.clear();
            return Ok(());
        }
        if self.prompts
            && !self.prompt_visible
            && let Some(p) = self.prompt
        {
            self.buf.extend_from_slice(p.as_bytes());
            self.prompt_visible = true;
        }
        let mut at = 0;
        while at < self.buf.len() {
            match self.file.write(&self.buf[at..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Someone made our stdout non-blocking: keep the rest for the next turn.
                    self.buf.drain(..at);
                    return Ok(());
                }
                Err(e) => {
                    self.closed = true;
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
        self.buf.clear();
        Ok(())
    }
}
