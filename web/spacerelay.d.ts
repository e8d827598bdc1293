// Types of spacerelay.js, the JavaScript client of spacerelay (browser
// protocol version 1).

/** The protocol version the module speaks. */
export declare const PROTOCOL: 1;
/** The WebSocket subprotocol offered to the relay. */
export declare const SUBPROTOCOL: "spacerelay.v1";

/** A WebSocket constructor: the browser's, Node's, or the ws package's. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WHATWG WebSocket the client uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ReconnectOptions {
  /** Most attempts in a row before giving up (state "closed"). Defaults to Infinity. */
  retries?: number;
  /** Delay before the first attempt, in ms, before jitter. Defaults to 500. */
  minDelay?: number;
  /** Longest delay between attempts, in ms. Defaults to 30000. */
  maxDelay?: number;
  /** Growth of the delay per attempt. Defaults to 2. */
  factor?: number;
  /**
   * Close codes after which the client reconnects. Defaults to
   * [1001, 1008, 1011] (PROTOCOL.md section 7); 1008 starts with a longer
   * delay. A broken connection (1006, or a ping timeout) is not among them.
   */
  codes?: number[];
}

export interface ConnectOptions {
  /**
   * The WebSocket constructor. Defaults to globalThis.WebSocket. Node 20
   * has none unless run with --experimental-websocket: pass the ws
   * package's.
   */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols to offer. Defaults to ["spacerelay.v1"]. */
  protocols?: string[];
  /** Time for a socket to open and say hello, in ms. Defaults to 10000. */
  connectTimeout?: number;
  /** Time between app-level pings, in ms; 0 turns them off. Defaults to 20000. */
  pingInterval?: number;
  /**
   * Time the relay has to send anything after a ping before the connection
   * is taken for dead (closed as 1006, reason "ping timeout"), in ms.
   * Defaults to 10000.
   */
  pingTimeout?: number;
  /** Reconnection, or false for none. */
  reconnect?: ReconnectOptions | false;
}

/** One input of an endpoint, from hello. */
export interface EndpointInput {
  name: string;
  label?: string;
  /** string, integer, number, boolean, array, object, file or any. */
  type: "string" | "integer" | "number" | "boolean" | "array" | "object" | "file" | "any" | (string & {});
  /** The Gradio component, such as "Textbox" or "Slider". */
  component?: string;
  required: boolean;
  default?: unknown;
}

/** One output of an endpoint, from hello. */
export interface EndpointOutput {
  name: string;
  /** The Gradio component, such as "Image" or "Textbox". */
  component?: string;
}

export interface Endpoint {
  /** The API name with its leading slash: "/predict". */
  name: string;
  inputs: EndpointInput[];
  outputs: EndpointOutput[];
}

export interface Limits {
  /** Most unfinished jobs per connection. */
  maxJobs: number | null;
  /** Largest message the client may send; a submit over it is refused here. */
  maxMessageBytes: number | null;
  /** Largest file the relay forwards. */
  maxFileBytes: number | null;
}

export interface TokenInfo {
  /** The upgrade request carried a token. */
  present: boolean;
  /** The token's expiry, when it is a JWT with exp. */
  expiresAt: Date | null;
}

/** What the relay said in hello, in JavaScript's casing. */
export interface Hello {
  protocol: number;
  session: string;
  endpoints: Endpoint[];
  limits: Limits;
  token: TokenInfo;
}

/** Error codes of the relay (PROTOCOL.md section 4). */
export type RelayErrorCode =
  | "bad_request"
  | "unknown_endpoint"
  | "unknown_job"
  | "invalid_input"
  | "too_many_jobs"
  | "rate_limited"
  | "missing_token"
  | "token_expired"
  | "quota_exceeded"
  | "gpu_unavailable"
  | "queue_full"
  | "upstream_error"
  | "upstream_unavailable"
  | "file_too_large"
  | "internal";

/** Error codes of the client itself. */
export type ClientErrorCode =
  /** The first connection failed or said no hello in time. */
  | "connection_failed"
  /** The connection ended while the job was unfinished. */
  | "connection_lost"
  /** close() was called while the job was unfinished. */
  | "closed"
  /** submit or ping while the client was not open (reconnecting or closed). */
  | "not_connected"
  /** job.result of a cancelled job. */
  | "cancelled"
  /** The relay sent something protocol version 1 does not allow. */
  | "protocol";

export type ErrorCode = RelayErrorCode | ClientErrorCode | (string & {});

export declare class SpaceRelayError extends Error {
  constructor(code: ErrorCode, message: string, details?: {
    title?: string | null;
    retryAfter?: number | null;
    jobId?: string | null;
    closeCode?: number | null;
    closeReason?: string | null;
    cause?: unknown;
  });
  readonly name: "SpaceRelayError";
  readonly code: ErrorCode;
  /** A short title from the upstream app, such as "ZeroGPU quota exceeded". */
  readonly title: string | null;
  /** Seconds until a retry may succeed, when the upstream said. */
  readonly retryAfter: number | null;
  /** The job the error ended, if any. */
  readonly jobId: string | null;
  /** For connection errors: the WebSocket close code (1006 when it broke). */
  readonly closeCode: number | null;
  readonly closeReason: string | null;
}

/** A file of an output: a File (a Blob with a name and a MIME type). */
export type RelayFile = Blob & { readonly name: string };

/** Output data: the relay's JSON with each {"file": id} replaced by its RelayFile. */
export type OutputData = unknown[];

/** A gallery item with a caption becomes this. */
export interface CaptionedFile {
  file: RelayFile;
  caption: unknown;
}

export interface ProgressStep {
  /** Steps done, out of length. */
  index: number | null;
  length: number | null;
  unit: string | null;
  /** A fraction 0..1, when the app reports one instead of index/length. */
  progress: number | null;
  desc: string | null;
}

interface EventBase {
  /** The job's id. */
  id: string;
}

/** The upstream queue took the job. */
export interface AcceptedEvent extends EventBase { type: "accepted" }
/** The job waits: position jobs are ahead of it (0 = next). Repeats as it moves. */
export interface QueuedEvent extends EventBase {
  type: "queued";
  position: number | null;
  queueSize: number | null;
  /** Estimated seconds, or null. */
  eta: number | null;
}
export interface StartedEvent extends EventBase { type: "started"; eta: number | null }
export interface JobProgressEvent extends EventBase {
  type: "progress";
  steps: ProgressStep[];
  /** The share done, 0..1, from the outermost step; null when unknown. */
  fraction: number | null;
}
/** A notice of the app: gr.Info, gr.Warning, ZeroGPU's "Waiting for a GPU". */
export interface LogEvent extends EventBase {
  type: "log";
  level: "info" | "warning" | "success" | "error" | (string & {});
  title: string | null;
  message: string;
}
/** An intermediate output of a generator endpoint, with full values. */
export interface PartialEvent extends EventBase {
  type: "partial";
  data: OutputData;
  /** data keyed by the endpoint's output names (the first of a repeated name wins). */
  outputs: Record<string, unknown>;
}
export interface ResultEvent extends EventBase {
  type: "result";
  data: OutputData;
  outputs: Record<string, unknown>;
  /** Seconds the upstream took, or null. */
  duration: number | null;
}
export interface JobErrorEvent extends EventBase { type: "error"; error: SpaceRelayError }
export interface CancelledEvent extends EventBase { type: "cancelled" }

export type TerminalEvent = ResultEvent | JobErrorEvent | CancelledEvent;
export type JobEvent =
  | AcceptedEvent
  | QueuedEvent
  | StartedEvent
  | JobProgressEvent
  | LogEvent
  | PartialEvent
  | TerminalEvent;

export type JobStatus = "pending" | "accepted" | "queued" | "started" | "completed" | "error" | "cancelled";

export interface JobResult {
  data: OutputData;
  outputs: Record<string, unknown>;
  duration: number | null;
}

/**
 * One job: an async iterable of its events, ending after its terminal
 * event. Every loop sees every event from the job's start; breaking out of
 * a loop does not cancel the job.
 */
export declare class Job implements AsyncIterable<JobEvent> {
  private constructor();
  readonly id: string;
  readonly endpoint: string | null;
  readonly status: JobStatus;
  readonly done: boolean;
  /**
   * The outputs. Rejects with a SpaceRelayError: the relay's error, a
   * connection error, or code "cancelled". Never left pending once the
   * connection ends.
   */
  readonly result: Promise<JobResult>;
  /**
   * Asks the relay to cancel the job. Resolves when the job has ended: with
   * cancelled, or with its result or error if that was already on its way.
   */
  cancel(): Promise<void>;
  [Symbol.asyncIterator](): AsyncIterableIterator<JobEvent>;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** open: the new session's id. */
  session?: string;
  /** reconnecting, closed: the close code that ended the connection. */
  code?: number | null;
  reason?: string | null;
  /** reconnecting, closed: why, as an error (code connection_lost, connection_failed or closed). */
  error?: SpaceRelayError;
  /** reconnecting: the attempt about to be made, from 1, and its delay in ms. */
  attempt?: number;
  delay?: number;
}

export interface ClientEventMap {
  /** The state changed, or another reconnection attempt was scheduled. */
  statechange: CustomEvent<StateChange>;
  /** A hello arrived: the first, and one after each reconnection. */
  hello: CustomEvent<Hello>;
  /** An error message not about a job, or a protocol violation by the relay. */
  error: CustomEvent<SpaceRelayError>;
}

/**
 * A connection to a relay. Make one with connect(), which waits for the
 * hello. The client reconnects after the close codes in
 * ConnectOptions.reconnect.codes; jobs unfinished when a connection ends
 * end with an error, and are not resubmitted.
 */
export declare class Client extends EventTarget {
  constructor(url?: string | URL, options?: ConnectOptions);
  /** Resolves after the first hello; rejects (connection_failed) if it never came. */
  readonly ready: Promise<Client>;
  readonly state: ConnectionState;
  /** The ws: or wss: URL. */
  readonly url: string;
  /** The current (or last) session's id. */
  readonly session: string | null;
  readonly protocol: number | null;
  readonly endpoints: Endpoint[];
  readonly limits: Limits | null;
  readonly token: TokenInfo | null;
  endpoint(name: string): Endpoint | undefined;

  /**
   * Submits a job with named inputs (missing ones take the app's defaults)
   * or positional data. Never throws: a job that cannot be sent ends at once
   * with an error (not_connected, bad_request).
   */
  submit(endpoint: string, inputs?: Record<string, unknown> | unknown[]): Job;
  /** Submits to the relay's default endpoint. */
  submit(inputs: Record<string, unknown> | unknown[]): Job;
  /** submit(…).result. */
  predict(endpoint: string, inputs?: Record<string, unknown> | unknown[]): Promise<JobResult>;

  /** An app-level ping; resolves with the round trip in ms. */
  ping(): Promise<number>;
  /** Closes for good (code 1000); unfinished jobs end with code "closed". */
  close(): void;

  /** Adds a listener that gets the event's detail; returns its remover. */
  on<K extends keyof ClientEventMap>(type: K, listener: (detail: ClientEventMap[K]["detail"]) => void): () => void;

  addEventListener<K extends keyof ClientEventMap>(type: K, listener: (ev: ClientEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ClientEventMap>(type: K, listener: (ev: ClientEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/**
 * Connects and resolves after the relay's hello. url defaults to "/v1/ws";
 * a relative url is resolved against the page, http(s) becomes ws(s).
 */
export declare function connect(url?: string | URL, options?: ConnectOptions): Promise<Client>;
