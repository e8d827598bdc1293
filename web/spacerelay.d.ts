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
  /** Bytes queued by send() and not yet sent; uploads wait while it is high. */
  readonly bufferedAmount: number;
  send(data: string | ArrayBuffer): void;
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
   * [1001, 1006, 1008, 1011, 1012, 1013, 4429, 4503] (PROTOCOL.md section
   * 7, and 1006 for a connection that broke without a close frame or a
   * ping timeout); 1008 starts with a longer delay, and 4429/4503 wait
   * out the relay's retry_after. A client that never reached a relay
   * (connection_failed) does not retry, except after 4429/4503.
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
  /**
   * Most jobs that wait here to be sent: over limits.maxJobs unfinished
   * jobs, or while the client connects or reconnects. A submit beyond it
   * ends at once with too_many_jobs. 0 turns waiting off: a submit is sent
   * at once (the relay may refuse it with too_many_jobs) or, while not
   * connected, ends with not_connected. Defaults to 16.
   */
  maxWaiting?: number;
  /**
   * The socket's bufferedAmount, in bytes, above which an upload waits
   * before its next frame. Defaults to twice limits.uploadChunkBytes.
   */
  uploadBuffer?: number;
  /**
   * Time a token refresh request has to answer before it counts as failed
   * (token_refresh_failed), in ms. Defaults to 10000; 0 or Infinity: no bound.
   */
  refreshTimeout?: number;
  /**
   * The fetch used for the token refresh (PROTOCOL.md section 6). Defaults
   * to globalThis.fetch.
   */
  fetch?: typeof fetch;
}

/** One input of an endpoint, from hello. */
export interface EndpointInput {
  name: string;
  /** The component's label. */
  label?: string;
  /** The component's help text. */
  info?: string;
  /** Dropdown, Radio, CheckboxGroup: the values a submit may send, with their labels. */
  choices?: { value: unknown; label: string }[];
  /** Slider, Number: bounds and step. */
  minimum?: number;
  maximum?: number;
  step?: number;
  /**
   * For an input that takes files: what an upload should accept, e.g. ["image"], [".png", ".jpg"],
   * ["image", "video"] (a Gallery's default) or ["file"] (any file). With type "array" the input
   * takes a list of files (a Gallery, or a File of several files).
   */
  file_types?: string[];
  /** The parameter's JSON schema, from the Space's API. */
  schema?: unknown;
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
  /** The endpoint yields partial outputs (previews). */
  generator?: boolean;
}

export interface Limits {
  /** Most unfinished jobs per connection. */
  maxJobs: number | null;
  /** Largest message the client may send; a submit over it is refused here. */
  maxMessageBytes: number | null;
  /** Largest file the relay forwards. */
  maxFileBytes: number | null;
  /** Largest file a page may upload; a bigger one is refused here (file_too_large). */
  maxUploadBytes: number | null;
  /** Most bytes a session may upload in all. */
  maxSessionUploadBytes: number | null;
  /** Largest binary frame of an upload: the client's chunk size. */
  uploadChunkBytes: number | null;
  /** Chunks of an upload the relay holds at most: the client keeps no more in flight. */
  uploadWindow: number | null;
}

/** The token as hello said it. */
export interface HelloToken {
  /** The upgrade request carried a token. */
  present: boolean;
  /** The token's expiry, when it is a JWT with exp. */
  expiresAt: Date | null;
}

/** The visitor's token as the relay sees it (client.token). */
export interface TokenInfo extends HelloToken {
  /**
   * Seconds the token has left by the relay's clock (hello's expires_in,
   * or the last refresh's, counted down on the page's monotonic clock),
   * or null when it does not expire.
   */
  expiresIn: number | null;
  /** The relay said how to refresh it (PROTOCOL.md section 6). */
  refreshable: boolean;
  /** Why the last refresh failed (code token_refresh_failed), or null. */
  error: SpaceRelayError | null;
}

/** The detail of a "token" event: after each refresh, done or failed. */
export interface TokenEvent extends TokenInfo {
  refreshed: boolean;
}

/** What the relay said in hello, in JavaScript's casing. */
export interface Hello {
  protocol: number;
  /** The relay's version, for logs and bug reports ("" when it did not say). */
  relay: string;
  session: string;
  endpoints: Endpoint[];
  limits: Limits;
  /** Optional parts of the protocol the relay speaks: "upload", "token_refresh". */
  features: string[];
  token: HelloToken;
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
  | "over_capacity"
  | "internal";

/** Refusals of a connection (close codes 4401, 4429, 4503; PROTOCOL.md section 1). */
export type RefusalCode =
  /** 4401: the relay needs a visitor token and the connection carried none. Not retried. */
  | "missing_token"
  /** 4429: this visitor holds the relay's limit of sessions (too many tabs). Retried after retryAfter. */
  | "too_many_sessions"
  /** 4503: the relay is full. Retried after retryAfter. */
  | "over_capacity"
  /** 4503: the relay is draining for a restart. Retried after retryAfter. */
  | "shutting_down"
  /** 4503: the relay does not know the Space's API yet (asleep, starting). Retried after retryAfter. */
  | "upstream_unavailable";

/** Error codes of the client itself. */
export type ClientErrorCode =
  /**
   * The first connection failed before it opened or said no hello in time:
   * the relay is unreachable, or it does not allow the page's origin.
   */
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
  | "protocol"
  /** The token refresh failed (status and cause say how); reload the page. */
  | "token_refresh_failed";

export type ErrorCode = RelayErrorCode | RefusalCode | ClientErrorCode | (string & {});

export declare class SpaceRelayError extends Error {
  constructor(code: ErrorCode, message: string, details?: {
    title?: string | null;
    retryAfter?: number | null;
    jobId?: string | null;
    closeCode?: number | null;
    closeReason?: string | null;
    status?: number | null;
    cause?: unknown;
  });
  readonly name: "SpaceRelayError";
  readonly code: ErrorCode;
  /** A short title from the upstream app, such as "ZeroGPU quota exceeded". */
  readonly title: string | null;
  /** Seconds until a retry may succeed, when the upstream or a refusal (retry_after=N) said. */
  readonly retryAfter: number | null;
  /** The job the error ended, if any. */
  readonly jobId: string | null;
  /** For connection errors and refusals: the WebSocket close code (1006 when it broke). */
  readonly closeCode: number | null;
  readonly closeReason: string | null;
  /** For token_refresh_failed: the refresh route's HTTP status, if it answered. */
  readonly status: number | null;
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

/**
 * The job waits here, not yet sent: behind max_jobs unfinished jobs
 * (reason "jobs") or for the connection (reason "connection"). position
 * jobs wait ahead of it (0 = next). Repeats as it moves.
 */
export interface WaitingEvent extends EventBase {
  type: "waiting";
  position: number;
  reason: "jobs" | "connection";
}
/** A file of the job's inputs goes up: loaded of total bytes the Space has taken. */
export interface UploadEvent extends EventBase {
  type: "upload";
  /** The upload's id on the wire. */
  upload: string;
  name: string;
  loaded: number;
  total: number;
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
  | WaitingEvent
  | UploadEvent
  | AcceptedEvent
  | QueuedEvent
  | StartedEvent
  | JobProgressEvent
  | LogEvent
  | PartialEvent
  | TerminalEvent;

export type JobStatus = "pending" | "waiting" | "uploading" | "accepted" | "queued" | "started" | "completed" | "error" | "cancelled";

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
  /** The inputs as given to submit. */
  readonly inputs: Inputs;
  readonly status: JobStatus;
  readonly done: boolean;
  /**
   * The outputs. Rejects with a SpaceRelayError: the relay's error, a
   * connection error, or code "cancelled". Never left pending once the
   * connection ends.
   */
  readonly result: Promise<JobResult>;
  /**
   * Cancels the job (and its uploads no other job uses). Resolves when the
   * job has ended: with cancelled, or with its result or error if that was
   * already on its way. A job still waiting here ends at once, and the
   * relay never hears of it.
   */
  cancel(): Promise<void>;
  /** Submits the same endpoint and inputs again, as a new job ("Retry this prompt"). */
  retry(): Job;
  [Symbol.asyncIterator](): AsyncIterableIterator<JobEvent>;
}

/**
 * A file uploaded once with client.upload(), for the inputs of later jobs
 * of the session. Passing it (or its blob) in inputs sends {"upload": id}.
 * After a reconnect the blob is uploaded again for the new session.
 */
export declare class Upload {
  private constructor();
  /** The upload's id on the wire (u1, u2, …), or null if it never started. */
  readonly id: string | null;
  readonly blob: Blob;
  readonly name: string;
  readonly size: number;
  /** Bytes the Space has taken (the relay's upload_progress). */
  readonly loaded: number;
  readonly status: "uploading" | "uploaded" | "error" | "cancelled";
  /**
   * Resolves when the relay has the whole file; rejects with a
   * SpaceRelayError (file_too_large, connection_lost, cancelled, …;
   * bad_request at once from a relay without the "upload" feature).
   */
  readonly done: Promise<Upload>;
  /** Stops the upload, unless an unfinished job uses it. */
  cancel(): void;
}

export interface UploadOptions {
  /** Called as the relay receives the bytes. */
  onProgress?: (p: { loaded: number; total: number }) => void;
}

/**
 * Inputs: by name or positional. File, Blob and Upload values anywhere in
 * them (top level, in arrays, in objects, a gallery item {file, caption})
 * are uploaded first; a File of this session's outputs is sent as its
 * reference.
 */
export type Inputs = Record<string, unknown> | unknown[];

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** open: the new session's id. */
  session?: string;
  /** reconnecting, closed: the close code that ended the connection. */
  code?: number | null;
  reason?: string | null;
  /**
   * reconnecting, closed: why, as an error: connection_lost,
   * connection_failed, closed, or a refusal (missing_token,
   * too_many_sessions, over_capacity, shutting_down, upstream_unavailable)
   * with its retryAfter.
   */
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
  /** A token refresh was done (refreshed) or failed (error). */
  token: CustomEvent<TokenEvent>;
}

/**
 * A connection to a relay. Make one with connect(), which waits for the
 * hello, or with new Client() to listen for events before it. The client
 * reconnects after the close codes in ConnectOptions.reconnect.codes; jobs
 * sent and unfinished when a connection ends end with connection_lost and
 * are not resubmitted; jobs not sent yet wait for the next connection.
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
  /** The relay's version from hello ("0.3.0"), for bug reports; null before the first hello. */
  readonly relayVersion: string | null;
  readonly endpoints: Endpoint[];
  readonly limits: Limits | null;
  /** hello.features: "upload", "token_refresh". */
  readonly features: string[];
  /** Jobs waiting here to be sent. */
  readonly waiting: number;
  /** The visitor's token as the relay sees it; null before the first hello. */
  readonly token: TokenInfo | null;
  endpoint(name: string): Endpoint | undefined;

  /**
   * Submits a job with named inputs (missing ones take the app's defaults)
   * or positional data; files in them are uploaded first. Never throws: a
   * job that cannot be sent ends at once with an error (not_connected,
   * bad_request, file_too_large, too_many_jobs when maxWaiting jobs wait).
   */
  submit(endpoint: string, inputs?: Inputs): Job;
  /** Submits to the relay's default endpoint. */
  submit(inputs: Inputs): Job;
  /** submit(…).result. */
  predict(endpoint: string, inputs?: Inputs): Promise<JobResult>;
  /** Uploads blob once, for the inputs of later jobs of this session. */
  upload(blob: Blob, options?: UploadOptions): Upload;
  /**
   * Refreshes the token now; the client does so by itself on
   * token_expiring and before a submit whose token has expired. Resolves
   * true when the relay took a fresh token.
   */
  refreshToken(): Promise<boolean>;

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

/** What the relay's /readyz says of the Space (PROTOCOL.md section 8), with a title for people. */
export interface SpaceStatus {
  ready: boolean;
  /** "ready", "starting", "unavailable" or "draining". */
  state: string;
  /** The Space's runtime stage as the Hub names it ("SLEEPING", "PAUSED", "BUILDING", …), or null. */
  stage: string | null;
  /** "The Space is asleep", "The Space is starting", …: for a page to show. */
  title: string;
  /** The relay's words, written for people; "" if it gave none. */
  message: string;
  /** Seconds, when not ready. */
  retryAfter: number | null;
}

/**
 * Asks the relay's /readyz what it knows of the Space: while a client
 * waits out a 4503 (upstream_unavailable), a page can say why. Never
 * rejects: a relay that does not answer is reported as unavailable.
 */
export declare function spaceStatus(url?: string | URL): Promise<SpaceStatus>;
