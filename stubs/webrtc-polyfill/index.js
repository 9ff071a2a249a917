// Shoal uses bittorrent-tracker over HTTP only; WebRTC peers are never created.
function unsupported() {
  throw new Error('WebRTC not supported in Shoal (webrtc-polyfill stub)')
}
export class RTCPeerConnection {
  constructor() {
    unsupported()
  }
}
export class RTCSessionDescription {
  constructor() {
    unsupported()
  }
}
export class RTCIceCandidate {
  constructor() {
    unsupported()
  }
}
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
