// S5: network while disabled: TCP, UDP, DNS, raw and packet sockets, netlink, unix sockets to
// the runner. With network enabled: still no unix, raw, packet or netlink sockets, no servers.
import type { Attack, Context } from './types.js';
import { jsTry } from './types.js';

const SOCKET = { kind: 'denied', syscall: 'socket' } as const;
const zygote = (c: Context) => JSON.stringify(`${c.workDir}/runtime/zygote.sock`);

export const attacks: Attack[] = [
  // Python
  {
    name: "TCP to the runner's own port",
    language: 'python3',
    code: (c) =>
      `import socket\nsocket.create_connection(("127.0.0.1", ${c.runnerPort}), timeout=2)\nprint("ESCAPED")`,
    expect: SOCKET,
  },
  {
    name: 'UDP datagram',
    language: 'python3',
    code: 'import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b"x", ("127.0.0.1", 53))\nprint("ESCAPED")',
    expect: SOCKET,
  },
  {
    name: 'DNS lookup',
    language: 'python3',
    code: 'import socket\nprint(socket.getaddrinfo("example.com", 80))\nprint("ESCAPED")',
    expect: { kind: 'fails', error: /operation not permitted: socket|gaierror|Errno/ },
  },
  {
    name: 'raw IP socket',
    language: 'python3',
    code: 'import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\nprint("ESCAPED")',
    expect: SOCKET,
  },
  {
    name: 'packet socket',
    language: 'python3',
    code: 'import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)\nprint("ESCAPED")',
    expect: SOCKET,
  },
  {
    name: 'netlink socket',
    language: 'python3',
    code: 'import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\nprint("ESCAPED")',
    expect: SOCKET,
  },
  {
    name: "unix socket to the runner's zygote, with network enabled",
    language: 'python3',
    network: true,
    code: (c) =>
      `import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(${zygote(c)})\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall: 'socket' },
  },
  {
    // A datagram pair can sendto() any datagram socket by path (/dev/log, say), pair or not.
    name: 'a unix datagram pair, with network enabled',
    language: 'python3',
    network: true,
    code: 'import socket\na, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'socketpair' },
  },
  {
    // EADDRINUSE for a chosen port tells which ports the pod's sockets hold: other runs'
    // connections (their local ports, and when they come and go), the runner's listeners.
    name: "probes the pod's TCP ports in use by binding them, with network enabled",
    language: 'python3',
    network: true,
    code: (c) =>
      [
        'import errno, socket',
        's = socket.socket()',
        'try:',
        `    s.bind(("127.0.0.1", ${c.runnerPort}))`,
        '    print("ESCAPED bound the runner\'s port")',
        'except OSError as e:',
        '    if e.errno == errno.EADDRINUSE:',
        '        print("ESCAPED the port is seen in use")',
        '    else:',
        '        z = socket.socket()',
        '        z.bind(("127.0.0.1", 0))  # an ephemeral port still binds (IPv6 probes)',
        '        print("BLOCKED", e.errno, z.getsockname()[1] > 0)',
      ].join('\n'),
    expect: { kind: 'blocked' },
  },
  {
    // The same through bind(port 0), which Landlock allows: the socket's ephemeral range
    // narrowed to the one port asked about (IP_LOCAL_PORT_RANGE).
    name: "probes the pod's TCP ports in use by binding port 0 in a one-port range, with network enabled",
    language: 'python3',
    network: true,
    code: [
      'import errno, socket, struct',
      'with socket.socket() as held:',
      '    held.bind(("127.0.0.1", 0))  # a port in use, as another run\'s connection holds one',
      '    port = held.getsockname()[1]',
      '    s = socket.socket()',
      '    try:',
      '        s.setsockopt(socket.IPPROTO_IP, 51, struct.pack("=I", port | (port << 16)))',
      '        s.bind(("127.0.0.1", 0))',
      '        print("ESCAPED bound a port in use", s.getsockname())',
      '    except OSError as e:',
      '        print("ESCAPED the port is seen in use" if e.errno == errno.EADDRINUSE else "BLOCKED", e)',
    ].join('\n'),
    expect: { kind: 'blocked' },
  },
  {
    name: 'a TCP server, with network enabled',
    language: 'python3',
    network: true,
    code: 'import socket\ns = socket.socket()\ns.bind(("127.0.0.1", 0))\ns.listen()\nprint("ESCAPED", s.getsockname())',
    expect: { kind: 'denied', syscall: /^(listen|bind)$/ },
  },
  // Node.js
  {
    name: "TCP to the runner's own port",
    language: 'nodejs',
    code: (c) =>
      `require('net').connect(${c.runnerPort}, '127.0.0.1').on('connect', () => console.log('ESCAPED'))`,
    expect: SOCKET,
  },
  {
    name: 'UDP datagram',
    language: 'nodejs',
    code: "const s = require('dgram').createSocket('udp4'); s.send('x', 53, '127.0.0.1', (e) => { if (e) throw e; console.log('ESCAPED') })",
    expect: SOCKET,
  },
  {
    name: 'DNS lookup with c-ares',
    language: 'nodejs',
    code: jsTry("await require('dns').promises.resolve4('example.com')"),
    expect: { kind: 'blocked' },
  },
  {
    name: 'fetch to a loopback server',
    language: 'nodejs',
    code: (c) => `fetch('http://127.0.0.1:${c.echoPort}/').then(() => console.log('ESCAPED'))`,
    expect: SOCKET,
  },
  {
    name: 'http.get to a loopback server',
    language: 'nodejs',
    code: (c) =>
      `require('http').get('http://127.0.0.1:${c.echoPort}/', () => console.log('ESCAPED'))`,
    expect: SOCKET,
  },
  {
    name: "unix socket to the runner's zygote, with network enabled",
    language: 'nodejs',
    network: true,
    code: (c) => `require('net').connect(${zygote(c)}).on('connect', () => console.log('ESCAPED'))`,
    expect: { kind: 'denied', syscall: 'socket' },
  },
  {
    name: 'a TCP server, with network enabled',
    language: 'nodejs',
    network: true,
    code: "require('net').createServer().listen(0, '127.0.0.1', () => console.log('ESCAPED'))",
    expect: { kind: 'denied', syscall: /^(listen|bind)$/ },
  },
];
