import { emitKeypressEvents } from "node:readline";

export type KeyAction = "up" | "down" | "crash" | "pause" | "resume" | "stop" | "add" | "quit";

interface Key {
  name?: string;
  ctrl?: boolean;
  sequence?: string;
}

const KEY_ACTIONS: Record<string, KeyAction> = {
  up: "up",
  k: "up",
  down: "down",
  j: "down",
  c: "crash",
  p: "pause",
  r: "resume",
  s: "stop",
  a: "add",
  q: "quit",
};

export function keyAction(key: Key): KeyAction | undefined {
  if (key.ctrl) return key.name === "c" || key.name === "d" ? "quit" : undefined;
  return key.name === undefined ? undefined : KEY_ACTIONS[key.name];
}

const ESC = "\x1b[";
const ENTER_ALT_SCREEN = `${ESC}?1049h${ESC}?25l`;
const LEAVE_ALT_SCREEN = `${ESC}?25h${ESC}?1049l`;

/**
 * Where frames go. Interactive: the alternate screen, redrawn in place, keys read in raw mode.
 * Plain: each frame printed in full, and only when its text differs from the last one.
 */
export class Terminal {
  readonly interactive: boolean;
  readonly color: boolean;
  private lastFrame = "";
  private active = false;
  private readonly onResize = () => {
    const frame = this.lastFrame;
    this.lastFrame = "";
    this.output.write(`${ESC}2J`);
    this.draw(frame);
  };
  private readonly onKeypress = (_: string | undefined, key: Key | undefined) => {
    const action = key ? keyAction(key) : undefined;
    if (action) this.onAction(action);
  };

  constructor(
    private readonly onAction: (action: KeyAction) => void,
    private readonly input: NodeJS.ReadStream = process.stdin,
    private readonly output: NodeJS.WriteStream = process.stdout,
  ) {
    this.interactive = Boolean(input.isTTY && output.isTTY);
    this.color = Boolean(output.isTTY) && !process.env.NO_COLOR;
  }

  open(): void {
    this.active = true;
    if (!this.interactive) return;
    this.output.write(ENTER_ALT_SCREEN);
    emitKeypressEvents(this.input);
    this.input.setRawMode(true);
    this.input.on("keypress", this.onKeypress);
    this.input.resume();
    this.output.on("resize", this.onResize);
  }

  draw(frame: string): void {
    if (!this.active || frame === this.lastFrame) return;
    this.lastFrame = frame;
    if (!this.interactive) {
      this.output.write(`${frame}\n\n`);
      return;
    }
    const lines = frame.split("\n").map((line) => `${line}${ESC}K`);
    this.output.write(`${ESC}H${lines.join("\r\n")}${ESC}J`);
  }

  /** Leaves raw mode and the alternate screen; safe to call more than once. */
  close(): void {
    if (!this.active) return;
    this.active = false;
    if (!this.interactive) return;
    this.input.off("keypress", this.onKeypress);
    this.output.off("resize", this.onResize);
    this.input.setRawMode(false);
    this.input.pause();
    this.output.write(LEAVE_ALT_SCREEN);
  }
}
