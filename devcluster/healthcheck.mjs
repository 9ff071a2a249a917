// The images' HEALTHCHECK: exits 0 when the daemon's GET /health answers 200 within 4 s, 1
// otherwise (no curl in the slim base image; node is there). The port comes from the same
// environment the entry script reads: the herd's SHOAL_BASE_PORT (its proxy port), or the
// agent's AGENT_SERVER_PORT when "agent" is the first argument.
const agent = process.argv[2] === 'agent'
const port = agent ? process.env.AGENT_SERVER_PORT || '16002' : process.env.SHOAL_BASE_PORT || '15000'
fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(4000) }).then(
  (res) => process.exit(res.status === 200 ? 0 : 1),
  () => process.exit(1),
)
